"""Optional stage ``final/regression``: general ability before and after training (the paper: MMLU unchanged).

Runs ``regression.tasks`` (lm-eval task names; ``selflen_mini_mc`` offline, ``mmlu`` online) on the base
model and on the final model (base + adapter, or the fully fine-tuned folder), with paired bootstrap standard
errors and a verdict per (task, metric); writes ``regression.json`` in the stage folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selflen.config import TrainConfig
from selflen.groups import RegressionConfig
from selflen.stages.common import StageResult
from selflen.store import Stage, write_json

RESULT_FILE = "regression.json"


@dataclass(frozen=True)
class RegressionSettings:
    regression: RegressionConfig
    dtype: str  # the model's
    bootstrap_iters: int = 1000


@dataclass(frozen=True)
class RegressionInputs:
    base_model: Path  # the base model's folder
    trained: Path  # final/finetune's ``adapter`` folder (LoRA) or full ``model`` folder


def settings(cfg: TrainConfig) -> RegressionSettings:
    return RegressionSettings(cfg.regression, cfg.model.dtype)


def run(stage: Stage, inputs: RegressionInputs, s: RegressionSettings, engine: None = None) -> StageResult:
    """lm-eval on both models (it loads them itself: no engine)."""
    import torch

    from evaluation.lm_eval_compare import run_regression

    base_model, trained = inputs.base_model, inputs.trained
    adapter, full = (trained, None) if trained.name == "adapter" else (None, trained)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    result = run_regression(base_model, adapter, s.regression.tasks, s.regression.limit, device=device, dtype=s.dtype,
                            finetuned_dir=full, bootstrap_iters=s.bootstrap_iters)
    write_json(stage.dir / RESULT_FILE, result)
    comparison: dict[str, Any] = result["comparison"] or {}
    metrics = {f"regression/{task}/{metric}/{key}": c[key] for task, ms in comparison.items()
               for metric, c in ms.items() for key in ("base", "other", "delta", "delta_se")}
    unchanged = sum(c["verdict"].startswith("unchanged") for ms in comparison.values() for c in ms.values())
    return StageResult(counts={"tasks": len(comparison), "unchanged_metrics": unchanged}, metrics=metrics,
                       extra={"regression": comparison})
