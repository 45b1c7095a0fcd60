"""General-capability regression: run lm-eval tasks on the base model and on base + adapter, and report deltas.

The paper reports MMLU unchanged after Self-Lengthen training; this checks the same claim for our adapters
through lm-eval's HF model with ``peft=<adapter>``. Offline tests use the tiny ``selflen_mini_mc`` task from
``evaluation/lm_eval_tasks``; on a machine with the datasets, pass real tasks such as ``["mmlu"]``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["TASKS_DIR", "flatten_results", "metric_deltas", "run_regression"]

log = logging.getLogger(__name__)
TASKS_DIR = Path(__file__).resolve().parent / "lm_eval_tasks"


def flatten_results(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """lm-eval's ``results`` block → ``{task: {metric: value}}`` with the ``,none`` filter suffix removed and
    non-numeric entries (aliases, ``N/A`` stderrs) dropped.

    >>> flatten_results({"t": {"alias": "t", "acc,none": 0.5, "acc_stderr,none": "N/A"}})
    {'t': {'acc': 0.5}}
    """
    flat: dict[str, dict[str, float]] = {}
    for task, metrics in results.items():
        flat[task] = {}
        for key, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            name = key[: -len(",none")] if key.endswith(",none") else key
            flat[task][name] = float(value)
    return flat


def metric_deltas(
    base: dict[str, dict[str, float]], adapter: dict[str, dict[str, float]]
) -> dict[str, dict[str, float]]:
    """``adapter − base`` for every (task, metric) both have, stderr entries excluded.

    >>> metric_deltas({"t": {"acc": 0.5, "acc_stderr": 0.1}}, {"t": {"acc": 0.75}})
    {'t': {'acc': 0.25}}
    """
    out: dict[str, dict[str, float]] = {}
    for task, metrics in base.items():
        other = adapter.get(task, {})
        deltas = {
            m: other[m] - v
            for m, v in metrics.items()
            if m in other and "stderr" not in m and math.isfinite(v) and math.isfinite(other[m])
        }
        if deltas:
            out[task] = deltas
    return out


def _evaluate(
    model_dir: str | Path,
    adapter_dir: str | Path | None,
    tasks: Sequence[str],
    limit: int | float | None,
    batch_size: int,
    device: str,
    dtype: str,
    include_path: str | Path,
) -> dict[str, dict[str, float]]:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    model_args: dict[str, Any] = {"pretrained": str(model_dir), "dtype": dtype}
    if adapter_dir is not None:
        model_args["peft"] = str(adapter_dir)
    result = simple_evaluate(
        model="hf",
        model_args=model_args,
        tasks=list(tasks),
        limit=limit,
        batch_size=batch_size,
        device=device,
        task_manager=TaskManager(include_path=str(include_path)),
        log_samples=False,
        bootstrap_iters=0,
    )
    if result is None:  # non-zero ranks under accelerate get None
        return {}
    return flatten_results(result["results"])


def run_regression(
    model_dir: str | Path,
    adapter_dir: str | Path | None = None,
    tasks: Sequence[str] = ("selflen_mini_mc",),
    limit: int | float | None = None,
    batch_size: int = 4,
    device: str = "cpu",
    dtype: str = "float32",
    include_path: str | Path = TASKS_DIR,
) -> dict[str, Any]:
    """Evaluate ``tasks`` on the base model and, when ``adapter_dir`` is given, on base + adapter.

    Returns ``{"tasks", "limit", "base": {task: {metric: v}}, "adapter": {...} | None, "delta": {...} | None}``
    where ``delta`` is adapter minus base.
    """
    args = (tasks, limit, batch_size, device, dtype, include_path)
    base = _evaluate(model_dir, None, *args)
    log.info("regression base: %s", base)
    adapter = _evaluate(model_dir, adapter_dir, *args) if adapter_dir is not None else None
    return {
        "tasks": list(tasks),
        "limit": limit,
        "model": str(model_dir),
        "adapter_dir": str(adapter_dir) if adapter_dir is not None else None,
        "base": base,
        "adapter": adapter,
        "delta": metric_deltas(base, adapter) if adapter is not None else None,
    }
