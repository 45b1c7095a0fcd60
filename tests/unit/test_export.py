"""``selflen.export`` on hand-made run folders (no training): the row conversions, the LLaMA-Factory schema with a
system prompt, the merged model of a LoRA run (greedy output equal to base + adapter) and of a full fine-tune,
and the one-line errors. The export of a real smoke run is ``tests/integration/test_export.py``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from selflen.export import FORMATS, export
from selflen.export.data import ExportError, llamafactory_info, to_alpaca, to_sharegpt
from selflen.store import write_jsonl

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
SYSTEM = {"role": "system", "content": "You write long answers."}


def _chat(i: int, system: bool = False) -> dict:
    turns = [{"role": "user", "content": f"Write about topic {i}."}, {"role": "assistant", "content": f"Long {i}."}]
    return {"id": f"row{i}", "messages": ([SYSTEM] if system else []) + turns}


def _done(folder: Path, stage: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "done.json").write_text(json.dumps({"stage": stage, "config_hash": f"h-{stage}", "counts": {},
                                                  "git_commit": "abc"}))


def make_run(root: Path, model_path: Path, system: bool = False) -> Path:
    """A run folder as train.py leaves it, for the parts the export reads: config, two iterations' SFT data, the
    length-control set."""
    root.mkdir(parents=True)
    cfg = {"model": {"name": "someone/tiny", "source": "local", "path": str(model_path), "dtype": "float32",
                     "chat_format": "chatml", "revision": None, "trust_remote_code": False},
           "sampling": {"temperature": 0.7, "top_p": 0.8}, "seed": 3, "language": {"name": "en"},
           "paths": {"cache_dir": str(root / "cache")}, "online": False, "experiment": None, "debug": None}
    (root / "config.json").write_text(json.dumps(cfg))
    for k in (1, 2):
        stage = root / f"iter_{k}" / "sft_data"
        _done(stage, f"iter_{k}/sft_data")
        write_jsonl(stage / "gen_sft.jsonl", [_chat(10 * k + i, system) for i in range(3)])
        write_jsonl(stage / "ext_sft.jsonl", [_chat(10 * k + i + 5) for i in range(2)])
    lc = root / "final" / "length_control"
    _done(lc, "final/length_control")
    write_jsonl(lc / "lc_sft.jsonl", [_chat(99)])
    return root


def test_rows_convert_with_a_system_prompt_and_history() -> None:
    row = {"id": "a", "messages": [SYSTEM, {"role": "user", "content": "q1"}, {"role": "assistant", "content": "r1"},
                                   {"role": "user", "content": "q2"}, {"role": "assistant", "content": "r2"}]}
    share = to_sharegpt(row)
    assert share["system"] == SYSTEM["content"]
    assert [c["from"] for c in share["conversations"]] == ["human", "gpt", "human", "gpt"]
    alpaca = to_alpaca(row)
    assert (alpaca["instruction"], alpaca["output"], alpaca["history"]) == ("q2", "r2", [["q1", "r1"]])
    assert alpaca["system"] == SYSTEM["content"] and alpaca["input"] == ""
    info = llamafactory_info({"gen_all": "gen_all.jsonl", "ext_all": "ext_all.jsonl"}, {"gen_all"})
    assert info["selflen_gen_all"]["columns"] == {"messages": "conversations", "system": "system"}
    assert info["selflen_ext_all"]["columns"] == {"messages": "conversations"}
    assert info["selflen_ext_all"]["tags"] == {"role_tag": "from", "content_tag": "value", "user_tag": "human",
                                               "assistant_tag": "gpt", "system_tag": "system"}


def test_data_formats_of_a_run_with_a_system_prompt(tmp_path: Path, tiny_model: Path) -> None:
    run = make_run(tmp_path / "run", tiny_model, system=True)
    written = export(run, tmp_path / "out", ["llamafactory", "alpaca", "hf"])
    assert [w.format for w in written] == ["llamafactory", "alpaca", "hf"]
    lf = tmp_path / "out" / "llamafactory"
    info = json.loads((lf / "dataset_info.json").read_text())
    assert sorted(info) == sorted(f"selflen_{n}" for n in ("gen_iter1", "ext_iter1", "gen_iter2", "ext_iter2",
                                                           "gen_all", "ext_all", "length_control"))
    assert "system" in info["selflen_gen_all"]["columns"] and "system" not in info["selflen_ext_all"]["columns"]
    first = json.loads((lf / "gen_all.jsonl").read_text().splitlines()[0])
    assert first["system"] == SYSTEM["content"] and first["conversations"][0]["from"] == "human"
    assert len((lf / "gen_all.jsonl").read_text().splitlines()) == 6  # both iterations
    card = (lf / "README.md").read_text()
    for needed in ("h-iter_1/sft_data", "h-final/length_control", "someone/tiny", "config.json sha256",
                   "Run seed: 3", "temperature", "## Licence", "6 rows"):
        assert needed in card, needed
    from datasets import load_dataset, load_from_disk

    assert load_from_disk(str(tmp_path / "out" / "hf"))["gen_iter2"]["messages"][0][0] == SYSTEM
    alpaca = load_dataset(str(tmp_path / "out" / "alpaca"), "gen_all", split="train")  # through the card's configs
    assert len(alpaca) == 6 and alpaca[0]["system"] == SYSTEM["content"]


def test_merged_lora_run_equals_base_plus_adapter(tmp_path: Path, tiny_model: Path, perturbed_adapter: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = make_run(tmp_path / "run", tiny_model)
    shutil.copytree(perturbed_adapter, run / "final" / "finetune" / "adapter")
    _done(run / "final" / "finetune", "final/finetune")
    (merged,) = export(run, tmp_path / "out", ["merged"])
    folder = merged.path
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["merged"]  # no build leftovers
    assert (folder / "generation_config.json").is_file() and (folder / "README.md").is_file()
    assert "h-final/finetune" in (folder / "README.md").read_text()
    tok = AutoTokenizer.from_pretrained(str(folder))
    ids = tok.apply_chat_template([{"role": "user", "content": "Write about the sea."}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    ref = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_model)), str(perturbed_adapter))
    got = AutoModelForCausalLM.from_pretrained(str(folder))
    with torch.no_grad():
        assert torch.equal(ref.generate(input_ids=ids, max_new_tokens=16, do_sample=False),
                           got.generate(input_ids=ids, max_new_tokens=16, do_sample=False))


def test_without_the_final_sft_the_last_generator_is_merged(tmp_path: Path, tiny_model: Path,
                                                            perturbed_adapter: Path) -> None:
    run = make_run(tmp_path / "run", tiny_model)
    shutil.copytree(perturbed_adapter, run / "iter_2" / "finetune_gen" / "adapter")
    _done(run / "iter_2" / "finetune_gen", "iter_2/finetune_gen")
    (merged,) = export(run, tmp_path / "out", ["merged"])
    made = json.loads((merged.path / "selflen_export.json").read_text())
    assert made["role"] == "gen2" and made["trained folder"] == "iter_2/finetune_gen/adapter"
    assert made["stage hash"] == "h-iter_2/finetune_gen"


def test_merged_full_finetune_is_the_trained_model_with_a_card(tmp_path: Path, tiny_model: Path) -> None:
    run = make_run(tmp_path / "run", tiny_model)
    shutil.copytree(tiny_model, run / "final" / "finetune" / "model")
    _done(run / "final" / "finetune", "final/finetune")
    (merged,) = export(run, tmp_path / "out", ["merged"])
    original = (run / "final" / "finetune" / "model" / "model.safetensors").read_bytes()
    assert (merged.path / "model.safetensors").read_bytes() == original
    assert "library_name: transformers" in (merged.path / "README.md").read_text()


def test_errors_are_one_line(tmp_path: Path, tiny_model: Path) -> None:
    with pytest.raises(ExportError, match="config.json is missing"):
        export(tmp_path / "nothing", tmp_path / "out")
    run = make_run(tmp_path / "run", tiny_model)
    with pytest.raises(ExportError, match="unknown format 'csv'"):
        export(run, tmp_path / "out", ["csv"])
    with pytest.raises(ExportError, match="no trained model"):
        export(run, tmp_path / "out", ["merged"])
    proc = subprocess.run([sys.executable, "-m", "selflen.export", str(tmp_path / "nothing"), "--to",
                           str(tmp_path / "o")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and proc.stderr.startswith("selflen: error:")
    assert set(FORMATS) == {"llamafactory", "sharegpt", "alpaca", "hf", "merged"}
