"""Serving a trained adapter merged into a copy of the base model: same outputs, built once, rebuilt on retraining."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from selflen.config import BackendConfig
from selflen.engines import merges_adapters
from selflen.models import check_chat_template, merged_model_dir


def _logits(model_dir: Path, adapter: Path | None = None):  # noqa: ANN202 - a tensor
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter))
    ids = torch.tensor([[1, 5, 9, 42, 7, 3, 11]])
    with torch.no_grad():
        return model.eval()(input_ids=ids).logits


def test_a_merged_copy_computes_what_the_adapter_on_the_base_computes(
    tiny_model: Path, perturbed_adapter: Path, tmp_path: Path
) -> None:
    merged = merged_model_dir(tiny_model, perturbed_adapter, tmp_path, "gen1")
    assert merged.parent == tmp_path and merged.name.startswith("gen1-")
    assert not (merged / "adapter_config.json").exists()
    check_chat_template(merged)  # the stages render chats from the merged folder's own tokenizer files
    with_adapter, base = _logits(tiny_model, perturbed_adapter), _logits(tiny_model)
    assert (with_adapter - base).abs().max() > 1e-2  # the adapter changes the model...
    assert (_logits(merged) - with_adapter).abs().max() < 1e-4  # ...and the copy carries exactly that change


def test_the_copy_is_built_once_and_again_for_a_retrained_adapter(
    tiny_model: Path, perturbed_adapter: Path, tmp_path: Path
) -> None:
    first = merged_model_dir(tiny_model, perturbed_adapter, tmp_path, "gen1")
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert merged_model_dir(tiny_model, perturbed_adapter, tmp_path, "gen1") == first  # a resumed run: reused
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp

    retrained = tmp_path / "retrained"
    shutil.copytree(perturbed_adapter, retrained)
    cfg = (retrained / "adapter_config.json").read_text()
    (retrained / "adapter_config.json").write_text(cfg.replace('"lora_alpha": 16', '"lora_alpha": 8'))
    second = merged_model_dir(tiny_model, retrained, tmp_path, "gen1")
    assert second != first and (second / "config.json").exists()
    assert merged_model_dir(tiny_model, perturbed_adapter, tmp_path, "gen1", dtype="bfloat16") not in (first, second)


def test_a_broken_adapter_is_refused_before_anything_loads(tiny_model: Path, tmp_path: Path) -> None:
    from selflen.models import ModelNotFound

    (tmp_path / "adapter").mkdir()
    with pytest.raises(ModelNotFound, match="adapter_config.json"):
        merged_model_dir(tiny_model, tmp_path / "adapter", tmp_path / "merged", "gen1")
    assert not (tmp_path / "merged").exists()


@pytest.mark.parametrize(
    ("name", "setting", "cuda", "expected"),
    [
        ("vllm", "auto", False, True),  # CPU: per-request LoRA decodes 2-3x slower than a merged copy
        ("vllm", "auto", True, False),  # GPU: LoRA kernels are fast and an engine start is slow
        ("vllm", "always", True, True),
        ("vllm", "never", False, False),
        ("hf", "always", False, False),  # only vLLM merges
        ("openai", "auto", False, False),  # a server loads adapters at run time
    ],
)
def test_which_backends_merge(monkeypatch: pytest.MonkeyPatch, name: str, setting: str, cuda: bool,
                              expected: bool) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert merges_adapters(BackendConfig(name=name, merge_adapters=setting)) is expected
