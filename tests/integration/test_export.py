"""``python -m selflen.export`` on a real smoke run (issue 35): every format, read back by the tool that takes it.

The run's model is a tiny random model served by a loopback hub stand-in and downloaded once into a private HF
cache, so the whole run (generation, the launched trainers, the evaluation) and the export also check the first
convention of issue 35: a cached hub model never touches the network. W&B runs offline: no API key is configured.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hub_standin import HubStandIn

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
REPO_ID = "selflen-test/tiny-chat"
OFFLINE_SWITCHES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "SELFLEN_ONLINE",
                    "WANDB_MODE", "WANDB_API_KEY")
PROMPTS = ["Write a short story about a lighthouse keeper.", "Explain how tides work.", "写一篇关于城市交通的文章。"]


class Smoke:
    def __init__(self, run: Path, out: Path, base: Path, env: dict[str, str], hub: HubStandIn, lines: list[str]):
        self.run, self.out, self.base, self.env, self.hub, self.lines = run, out, base, env, hub, lines


def _python(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, *args], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def smoke(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("export")
    with HubStandIn({REPO_ID: tiny_model}) as hub:
        env = {k: v for k, v in os.environ.items() if k not in OFFLINE_SWITCHES}
        env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp / "hf"), NETRC=str(tmp / "no-netrc"), PYTHONPATH=str(REPO),
                   OMP_WAIT_POLICY="PASSIVE")
        fetched = _python(["-c", f"from selflen.models import hub_model_dir; print(hub_model_dir({REPO_ID!r}))"],
                          env)
        base = Path(fetched.stdout.strip().splitlines()[-1])
        assert hub.requests, "the first resolution downloads from the stand-in"
        hub.requests.clear()
        run = tmp / "run"
        _python([str(REPO / "train.py"), "debug=smoke", "model.source=hub", f"model.path={REPO_ID}", "logger=wandb",
                 f"hydra.run.dir={run}"], env)
        assert hub.requests == [], "a cached hub model never touches the network, in the whole loop"
        out = tmp / "export"
        exported = _python(["-m", "selflen.export", str(run), "--to", str(out)], env)
        assert hub.requests == [], "nor in the export"
        yield Smoke(run, out, base, env, hub, exported.stdout.strip().splitlines())


def test_the_run_logged_wandb_offline_without_a_key(smoke: Smoke) -> None:
    summary = json.loads((smoke.run / "summary.json").read_text())
    assert "offline" in summary["wandb"] and list((smoke.run / "wandb").glob("offline-run-*"))


def test_every_format_is_written_and_reported_with_its_size_and_time(smoke: Smoke) -> None:
    names = [line.split(":")[0] for line in smoke.lines]
    assert names == ["llamafactory", "sharegpt", "alpaca", "hf", "merged"], smoke.lines
    for line in smoke.lines:
        assert line.endswith(" s)") and "(" in line
    for name in names:
        card = (smoke.out / name / "README.md").read_text()
        assert card.startswith("---\n") and "## Licence" in card


def test_llamafactory_folder_follows_its_documented_schema(smoke: Smoke) -> None:
    folder = smoke.out / "llamafactory"
    info = json.loads((folder / "dataset_info.json").read_text())
    assert {"selflen_gen_iter1", "selflen_ext_iter2", "selflen_gen_all", "selflen_length_control"} <= set(info)
    keys = {"file_name", "formatting", "columns", "tags"}
    tag_keys = {"role_tag", "content_tag", "user_tag", "assistant_tag", "observation_tag", "function_tag",
                "system_tag"}
    for entry in info.values():
        assert set(entry) <= keys and entry["formatting"] == "sharegpt"
        assert set(entry["columns"]) <= {"messages", "system", "tools"} and set(entry["tags"]) <= tag_keys
        tags, column = entry["tags"], entry["columns"]["messages"]
        rows = [json.loads(line) for line in (folder / entry["file_name"]).open()]
        assert rows
        for row in rows:  # LLaMA-Factory: user turns at odd positions, assistant turns at even ones, ending on one
            turns = row[column]
            roles = [t[tags["role_tag"]] for t in turns]
            assert roles == [tags["user_tag"], tags["assistant_tag"]] * (len(roles) // 2) and roles
            assert all(isinstance(t[tags["content_tag"]], str) for t in turns)
    gen_all = sum(1 for _ in (folder / info["selflen_gen_all"]["file_name"]).open())
    per_iteration = [sum(1 for _ in (folder / f"gen_iter{k}.jsonl").open()) for k in (1, 2)]
    assert gen_all == sum(per_iteration)  # the cumulative set is every iteration's


def test_sharegpt_and_alpaca_hold_the_run_rows(smoke: Smoke) -> None:
    from datasets import load_dataset

    source = [json.loads(line) for line in (smoke.run / "iter_1" / "sft_data" / "gen_sft.jsonl").open()]
    share = load_dataset("json", data_files=str(smoke.out / "sharegpt" / "gen_iter1.jsonl"), split="train")
    alpaca = load_dataset("json", data_files=str(smoke.out / "alpaca" / "gen_iter1.jsonl"), split="train")
    assert len(share) == len(alpaca) == len(source)
    for row, s, a in zip(source, share, alpaca, strict=True):
        user, answer = row["messages"][-2]["content"], row["messages"][-1]["content"]
        assert s["id"] == a["id"] == row["id"]
        assert [c["value"] for c in s["conversations"]] == [user, answer]
        assert (a["instruction"], a["input"], a["output"]) == (user, "", answer)


def test_hf_dataset_loads_from_disk_with_a_provenance_card(smoke: Smoke) -> None:
    from datasets import load_from_disk

    dataset = load_from_disk(str(smoke.out / "hf"))
    assert {"gen_iter1", "ext_iter1", "gen_all", "ext_all", "length_control"} <= set(dataset)
    lc = [json.loads(line) for line in (smoke.run / "final" / "length_control" / "lc_sft.jsonl").open()]
    assert dataset["length_control"]["messages"] == [r["messages"] for r in lc]
    card = (smoke.out / "hf" / "README.md").read_text()
    done = json.loads((smoke.run / "iter_1" / "sft_data" / "done.json").read_text())
    assert done["config_hash"] in card and "iter_1/sft_data" in card  # stage hashes
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in card and "config.json sha256" in card  # the model
    assert "selflen/seeds/en.jsonl" in card and "temperature" in card and "Run seed: 0" in card  # seeds, sampling
    assert f"{len(lc)} rows" in card and "apache-2.0" in card  # counts, licence


def test_trl_sfttrainer_trains_on_the_hf_export(smoke: Smoke, tmp_path: Path) -> None:
    """The README's TRL command, one step, with the merged model standing in for the base model id."""
    from datasets import concatenate_datasets, load_from_disk
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    sets = load_from_disk(str(smoke.out / "hf"))
    data = concatenate_datasets([sets["gen_all"], sets["length_control"]]).remove_columns("id")
    trainer = SFTTrainer(model=str(smoke.out / "merged"), train_dataset=data,
                         args=SFTConfig(output_dir=str(tmp_path / "trl"), max_length=1024, max_steps=1,
                                        per_device_train_batch_size=2, report_to="none", use_cpu=True),
                         peft_config=LoraConfig(r=8, lora_alpha=16, target_modules="all-linear",
                                                task_type="CAUSAL_LM"))
    result = trainer.train()
    assert result.global_step == 1 and result.training_loss > 0


def test_merged_model_greedy_output_equals_base_plus_adapter(smoke: Smoke) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    merged = smoke.out / "merged"
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "README.md"):
        assert (merged / name).is_file(), name
    tok = AutoTokenizer.from_pretrained(str(merged))
    assert tok.chat_template and GenerationConfig.from_pretrained(str(merged)).eos_token_id is not None
    assert not list(merged.glob("adapter_*"))
    card = (merged / "README.md").read_text()
    assert "vllm serve" in card and "final/finetune/adapter" in card
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(smoke.base), dtype=torch.float32),
                                          str(smoke.run / "final" / "finetune" / "adapter")).eval()
    folded = AutoModelForCausalLM.from_pretrained(str(merged), dtype=torch.float32).eval()
    base_only = AutoModelForCausalLM.from_pretrained(str(smoke.base), dtype=torch.float32).eval()
    differs = False
    for prompt in PROMPTS:
        ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)["input_ids"]
        with torch.no_grad():
            want = reference.generate(input_ids=ids, max_new_tokens=24, do_sample=False)
            got = folded.generate(input_ids=ids, max_new_tokens=24, do_sample=False)
            plain = base_only.generate(input_ids=ids, max_new_tokens=24, do_sample=False)
            logits_want, logits_got = reference(input_ids=ids).logits, folded(input_ids=ids).logits
        assert torch.equal(want, got), prompt
        assert torch.allclose(logits_want, logits_got, atol=1e-4), prompt  # float32: the dtype's tolerance
        differs |= not torch.equal(plain, got)
    assert differs, "the adapter changed nothing: the test would not see a missing merge"


def test_push_to_hub_uploads_the_data_and_the_model_to_a_loopback_hub(smoke: Smoke, tmp_path: Path) -> None:
    env = {**smoke.env, "HF_TOKEN": "hf_" + "x" * 34}
    proc = _python(["-m", "selflen.export", str(smoke.run), "--to", str(tmp_path), "--format", "sharegpt", "merged",
                    "--push-to-hub", "selflen-test/long-writer"], env)
    assert [ln for ln in proc.stdout.splitlines() if ln.startswith("pushed: ")] == [
        f"pushed: {smoke.hub.url}/selflen-test/long-writer"] * 2
    created = [(c["organization"], c["name"], c.get("type", "model"), c["visibility"]) for c in smoke.hub.created]
    assert created == [("selflen-test", "long-writer", "dataset", "private"),
                       ("selflen-test", "long-writer", "model", "private")]
    data = smoke.hub.uploads["datasets/selflen-test/long-writer"]
    model = smoke.hub.uploads["models/selflen-test/long-writer"]
    assert data["gen_iter1.jsonl"] == (tmp_path / "sharegpt" / "gen_iter1.jsonl").read_bytes() and "README.md" in data
    assert model["model.safetensors"] == (tmp_path / "merged" / "model.safetensors").read_bytes()


def test_push_is_refused_offline_in_one_line(smoke: Smoke, tmp_path: Path) -> None:
    env = {**smoke.env, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "selflen.export", str(smoke.run), "--to", str(tmp_path),
                           "--format", "sharegpt", "--push-to-hub", "selflen-test/x"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("selflen:")]
    assert proc.returncode == 1 and len(lines) == 1 and "HF_HUB_OFFLINE" in lines[0], proc.stderr[-2000:]
    assert (tmp_path / "sharegpt" / "gen_iter1.jsonl").is_file()  # the export itself is kept
