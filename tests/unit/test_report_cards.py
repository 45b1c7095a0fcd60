"""Data and adapter cards: the fields a reader needs, Hub-readable front matter, and folders that still load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selflen.report import cards
from selflen.stages.common import Chat
from selflen.stages.sft_data import EXT_FILE, GEN_FILE, SftDataSettings
from selflen.stages.sft_data import run as sft_data_run
from selflen.store import Stage
from tests.defaults import group

pytestmark = pytest.mark.unit
MODEL_ID = "Qwen/Qwen2-7B-Instruct"


def _kept(n: int = 3) -> list[dict]:
    return [{"id": f"k1-i{i}-s0-e0", "instruction": f"Write a report on topic {i}.",
             "response": f"Intro {i}.\nMiddle part.\nEnd.", "extended": f"Intro {i}.\nA much longer middle.\nEnd."}
            for i in range(n)]


@pytest.fixture()
def sft_folder(tmp_path: Path) -> Path:
    """An sft_data stage folder written by the real stage code (gen_sft.jsonl, ext_sft.jsonl, done.json)."""
    stage = Stage(tmp_path / "iter_1" / "sft_data", "iter_1/sft_data", "hash")
    settings = SftDataSettings(sft_data=group("sft_data", p_keep_line=0.8, max_examples=None), joiner="\n",
                               language="en", chat=Chat(), seed=0, prompts="")
    stage.finish(sft_data_run(stage, _kept(), settings).counts)
    return stage.dir


def _data_card(folder: Path, model_dir: Path) -> Path:
    return cards.write_data_card(
        folder, title="selflen iteration 1 SFT data", model=cards.describe_model(MODEL_ID, model_dir, source="tiny"),
        seeds=cards.describe_seeds("en"), sampling={"temperature": 0.7, "top_p": 0.8, "max_new_tokens": 2048},
        filters={"end_punct": ".!?", "ngram_n": 10, "min_ratio": 1.2}, counts={"gen_examples": 3, "ext_examples": 3},
        drops={"ratio": 2, "repetition": 1}, licence_note=cards.default_licence_note(MODEL_ID),
        extra={"iteration": 1, "run_dir": "/runs/x"})


def test_data_card_has_provenance_fields(sft_folder: Path, tiny_model: Path) -> None:
    path = _data_card(sft_folder, tiny_model)
    meta = cards.read_front_matter(path)
    assert meta["license"] == "apache-2.0" and meta["language"] == ["en"]
    assert meta["task_categories"] == ["text-generation"] and "self-lengthen" in meta["tags"]
    configs = {c["config_name"]: c["data_files"][0]["path"] for c in meta["configs"]}
    assert configs == {"gen": GEN_FILE, "ext": EXT_FILE}
    text = path.read_text()
    config_hash = cards.file_sha256(tiny_model / "config.json")
    seeds = cards.describe_seeds("en")
    assert config_hash and config_hash in text and MODEL_ID in text
    assert seeds["sha256"] in text and f"| count | {seeds['count']} |" in text
    assert "| temperature | 0.7 |" in text and "| ratio | 2 |" in text and "| min_ratio | 1.2 |" in text
    assert f"| {GEN_FILE} | 3 |" in text
    assert "project's own" in text and "decontaminate" in text and '"run_dir": "/runs/x"' in text


def test_card_front_matter_is_hub_readable(sft_folder: Path, tiny_model: Path) -> None:
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(_data_card(sft_folder, tiny_model))
    assert card.data.license == "apache-2.0" and card.data.pretty_name == "selflen iteration 1 SFT data"


def test_sft_folder_loads_with_datasets(sft_folder: Path, tiny_model: Path, tmp_path: Path) -> None:
    from datasets import load_dataset

    _data_card(sft_folder, tiny_model)
    for name in (GEN_FILE, EXT_FILE):
        ds = load_dataset("json", data_files=str(sft_folder / name), split="train", cache_dir=str(tmp_path / "c"))
        assert len(ds) == 3 and ds[0]["messages"][-1]["role"] == "assistant"
    by_card = load_dataset(str(sft_folder), "ext", split="train", cache_dir=str(tmp_path / "c"))
    assert len(by_card) == 3


def test_adapter_card_and_peft_load(tiny_model: Path, tmp_path: Path) -> None:
    import torch
    from huggingface_hub import ModelCard
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    folder = tmp_path / "iter_2" / "finetune_gen" / "adapter"
    torch.manual_seed(0)
    peft = get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny_model)),
                          LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    peft.save_pretrained(str(folder))
    stats = {"examples": 12, "dropped_too_long": 1, "steps": 3, "train_loss": 8.5, "trained": True}
    path = cards.write_adapter_card(
        folder, base_model=cards.describe_model(MODEL_ID, tiny_model, source="tiny"), role="gen", iteration=2,
        lineage="continue", train_stats=stats, data_path="iter_2/sft_data/gen_sft.jsonl",
        settings={"r": 4, "learning_rate": 1e-4}, init_adapter="iter_1/finetune_gen/adapter")
    card = ModelCard.load(path)
    assert card.data.library_name == "peft" and card.data.base_model == MODEL_ID
    assert card.data.license == "apache-2.0" and "role-gen" in card.data.tags and "iteration-2" in card.data.tags
    text = path.read_text()
    assert "iter_1/finetune_gen/adapter" in text and "| train_loss | 8.5 |" in text
    assert cards.file_sha256(tiny_model / "config.json") in text

    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_model)), str(folder))
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=ids).logits, peft(input_ids=ids).logits, atol=1e-5)
    assert loaded.peft_config["default"].r == 4


def test_full_model_card_says_transformers(tmp_path: Path) -> None:
    path = cards.write_adapter_card(tmp_path, base_model={"name": "meta-llama/Meta-Llama-3.1-8B-Instruct"},
                                    role="final", iteration="final", lineage="fresh", train_stats={"steps": 1},
                                    data_path="final/length_control/lc_sft.jsonl", method="full")
    meta = cards.read_front_matter(path)
    assert meta["library_name"] == "transformers" and meta["license"] == "llama3.1"
    assert not any(t.startswith("base_model:adapter:") for t in meta["tags"])
    assert "trained fresh" in path.read_text()


def test_push_to_hub_refuses_offline(sft_folder: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _data_card(sft_folder, tiny_model)
    with pytest.raises(cards.HubError, match="online use is off"):
        cards.push_to_hub(sft_folder, "someone/selflen-data", online=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(cards.HubError, match="HF_HUB_OFFLINE"):
        cards.push_to_hub(sft_folder, "someone/selflen-data", online=True)


def test_push_to_hub_needs_a_card(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with pytest.raises(cards.HubError, match="no README.md"):
        cards.push_to_hub(tmp_path, "someone/x", online=True)


def test_data_files_skip_stage_records(tmp_path: Path) -> None:
    for name in ("records.jsonl", "lc_sft.jsonl"):
        (tmp_path / name).write_text(json.dumps({"id": 1}) + "\n")
    assert cards.data_files_in(tmp_path) == {"lc": "lc_sft.jsonl"}
