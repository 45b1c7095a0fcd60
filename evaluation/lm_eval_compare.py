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

__all__ = ["TASKS_DIR", "bootstrap_se", "compare_scores", "flatten_results", "metric_deltas", "run_regression",
           "verdict_lines"]

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


PerDoc = dict[str, dict[str, dict[int, float]]]  # task -> metric -> doc_id -> value


def bootstrap_se(values: Sequence[float], iters: int = 1000, seed: int = 0) -> float:
    """Bootstrap standard error of the mean of ``values`` (resampling items with replacement).

    >>> bootstrap_se([1.0, 1.0, 1.0])
    0.0
    >>> 0.1 < bootstrap_se([0.0, 1.0] * 10) < 0.15
    True
    """
    import random

    n = len(values)
    if n < 2:
        return float("nan")
    rng = random.Random(seed)
    means = [sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(iters)]
    mu = sum(means) / iters
    return math.sqrt(sum((m - mu) ** 2 for m in means) / (iters - 1))


def compare_scores(base: PerDoc, other: PerDoc, iters: int = 1000, seed: int = 0, k: float = 2.0) -> dict[str, Any]:
    """Per (task, metric) over the documents both answered: both means, the difference, its paired bootstrap
    standard error and a verdict: ``unchanged within 2 SE`` or the signed difference in SE units.

    >>> out = compare_scores({"t": {"acc": {0: 1.0, 1: 0.0}}}, {"t": {"acc": {0: 1.0, 1: 0.0}}})
    >>> out["t"]["acc"]["delta"], out["t"]["acc"]["verdict"]
    (0.0, 'unchanged within 2 SE')
    """
    out: dict[str, Any] = {}
    for task, metrics in base.items():
        for metric, docs in metrics.items():
            theirs = other.get(task, {}).get(metric, {})
            ids = sorted(set(docs) & set(theirs))
            if not ids:
                continue
            b, o = [docs[i] for i in ids], [theirs[i] for i in ids]
            diffs = [y - x for x, y in zip(b, o, strict=True)]
            delta = sum(diffs) / len(ids)
            se = bootstrap_se(diffs, iters, seed)
            if math.isnan(se) or abs(delta) <= k * se:
                verdict = f"unchanged within {k:g} SE"
            else:
                verdict = f"changed by {delta:+.4f} ({delta / se:+.1f} SE)" if se > 0 else f"changed by {delta:+.4f}"
            out.setdefault(task, {})[metric] = {
                "n": len(ids), "base": sum(b) / len(ids), "other": sum(o) / len(ids),
                "base_se": bootstrap_se(b, iters, seed), "other_se": bootstrap_se(o, iters, seed),
                "delta": delta, "delta_se": se, "verdict": verdict,
            }
    return out


def verdict_lines(comparison: dict[str, Any]) -> list[str]:
    """One line per (task, metric): ``task/metric: base 0.50 -> 0.55 (±0.03): unchanged within 2 SE``."""
    return [f"{task}/{metric}: base {c['base']:.4f} -> {c['other']:.4f} (delta {c['delta']:+.4f} ± "
            f"{c['delta_se']:.4f}, n={c['n']}): {c['verdict']}"
            for task, metrics in comparison.items() for metric, c in metrics.items()]


def _per_doc(samples: dict[str, list[dict[str, Any]]]) -> PerDoc:
    """lm-eval's logged samples -> per-document metric values (numbers only)."""
    out: PerDoc = {}
    for task, rows in samples.items():
        for row in rows:
            for key, value in row.items():
                if key in ("doc_id", "target", "doc", "arguments", "resps", "filtered_resps", "doc_hash",
                           "prompt_hash", "target_hash", "filter", "metrics"):
                    continue
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                out.setdefault(task, {}).setdefault(key, {})[int(row["doc_id"])] = float(value)
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
    per_doc: dict[str, Any] | None = None,
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
        log_samples=per_doc is not None,
        bootstrap_iters=0,
    )
    if result is None:  # non-zero ranks under accelerate get None
        return {}
    if per_doc is not None:
        per_doc.update(_per_doc(result.get("samples") or {}))
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
    finetuned_dir: str | Path | None = None,
    bootstrap_iters: int = 1000,
) -> dict[str, Any]:
    """Evaluate ``tasks`` on the base model and on base + ``adapter_dir`` (LoRA) or on ``finetuned_dir`` (a fully
    fine-tuned model folder); any lm-eval task name works (``mmlu`` where its data can be reached).

    Returns ``{"tasks", "limit", "base": {task: {metric: v}}, "adapter": {...} | None, "delta": {...} | None,
    "comparison": {task: {metric: {base, other, delta, delta_se, verdict, ...}}} | None}`` where ``delta`` is
    the other model minus base and ``delta_se`` a paired bootstrap standard error over the documents.
    """
    if adapter_dir is not None and finetuned_dir is not None:
        raise ValueError("compare the base model with an adapter or with a fine-tuned model, not both")
    args = (tasks, limit, batch_size, device, dtype, include_path)
    base_docs: dict[str, Any] = {}
    base = _evaluate(model_dir, None, *args, per_doc=base_docs)
    log.info("regression base: %s", base)
    other_docs: dict[str, Any] = {}
    if finetuned_dir is not None:
        other = _evaluate(finetuned_dir, None, *args, per_doc=other_docs)
    elif adapter_dir is not None:
        other = _evaluate(model_dir, adapter_dir, *args, per_doc=other_docs)
    else:
        other = None
    comparison = compare_scores(base_docs, other_docs, bootstrap_iters) if other is not None else None
    for line in verdict_lines(comparison or {}):
        log.info("regression %s", line)
    return {
        "tasks": list(tasks),
        "limit": limit,
        "model": str(model_dir),
        "adapter_dir": str(adapter_dir) if adapter_dir is not None else None,
        "finetuned_dir": str(finetuned_dir) if finetuned_dir is not None else None,
        "base": base,
        "adapter": other,
        "delta": metric_deltas(base, other) if other is not None else None,
        "comparison": comparison,
    }
