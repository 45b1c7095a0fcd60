"""Serving a trained adapter merged into a copy of the base model: same outputs, built once, rebuilt on retraining."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from selflen.config import BackendConfig
from selflen.engines import Engine
from selflen.models import check_chat_template, merged_model_dir, merges_adapters
from tests.defaults import config


def _logits(model_dir: Path, adapter: Path | None = None):  # a tensor
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
    built: list[str] = []
    second = merged_model_dir(tiny_model, retrained, tmp_path, "gen1", before_build=lambda: built.append("x"))
    assert second != first and (second / "config.json").exists() and built == ["x"]
    assert not first.exists()  # the copy of the adapter before retraining is gone (each copy is a whole model)
    assert merged_model_dir(tiny_model, retrained, tmp_path, "gen1", before_build=lambda: built.append("y")) == second
    assert built == ["x"]  # nothing built, so nothing freed for it
    other = merged_model_dir(tiny_model, retrained, tmp_path, "ext1", dtype="bfloat16")
    assert other.name.startswith("ext1-") and second.exists()  # another role's copy leaves this one alone


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


class _Engine(Engine):
    exclusive = True

    def __init__(self) -> None:
        self._adapters: dict[str, str] = {}

    def generate(self, requests, desc=None):
        return []

    def add_adapter(self, name: str, path: str) -> None:
        self._adapters[name] = path


def test_the_runner_serves_merged_copies_on_engines_without_lora(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    import torch

    import selflen.stage_runner as stage_runner
    from selflen.store import RunLayout
    from selflen.tracking import NullLogger

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    starts: list[tuple[Path, bool]] = []
    merges: list[tuple[str, str, Path]] = []

    def start(backend, model, folder, seed, enable_lora=True):
        starts.append((Path(folder), enable_lora))
        return _Engine()

    def merge(base, adapter, out_root, label, dtype, trust_remote_code=False, before_build=None):
        merges.append((label, dtype, Path(out_root)))
        before_build()
        folder = Path(out_root) / f"{label}-key"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text("{}")
        return folder

    monkeypatch.setattr(stage_runner, "engine_from_config", start)
    monkeypatch.setattr(stage_runner, "merged_model_dir", merge)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"r": 8}')
    (adapter / "adapter_model.safetensors").write_bytes(b"x")
    run = tmp_path / "run"
    for backend, merged in (("vllm", True), ("hf", False)):
        starts.clear(), merges.clear()
        cfg = config()
        cfg.backend.name, cfg.backend.dtype = backend, "bfloat16"
        runner = stage_runner.Runner(cfg, RunLayout(run), tmp_path / "base", NullLogger())
        runner.engines.for_folder(None, "base")
        bound = runner.engines.for_folder(adapter, "gen1")
        if merged:
            assert merges == [("gen1", "bfloat16", run / "merged")]
            assert starts == [(tmp_path / "base", False), (run / "merged" / "gen1-key", False)]
            assert not bound.has_adapter(f"{runner.engines.tag}-gen1")
        else:  # the hf engine serves the adapter on the base model
            assert merges == [] and starts == [(tmp_path / "base", True)]
            assert bound.has_adapter(f"{runner.engines.tag}-gen1")
