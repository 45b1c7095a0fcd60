"""Evaluation: a Generator (the base model at point 0, iteration k's at point k, the length-following model at
``final``) answers a held-out benchmark slice; answers are scored with the benchmark's own counter and formulas
(``evaluation``), and their length is summarised: mean/median words, effective length, repeated 10-gram rate,
and how many answers the token budget cut (``hit_budget``), so a length set by the budget is visible.

Config group ``evaluate``; prompts are the benchmark's; rules in ``evaluation`` (scorers, repetition). The
stage receives the engine already bound to the model it evaluates: it never knows the loop.
Its inputs (``EvaluateInputs``: the slice and the held-out split) are built once per run by the pipeline.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluation.api import benchmark_requests, log_metrics, response_rows, scatter_plot, score_rows
from evaluation.benchmarks import load_benchmark, slice_rows
from evaluation.repetition import repeated_ngram_rate
from selflen.addresses import FINAL, Point
from selflen.config import TrainConfig
from selflen.engines.base import Engine, SamplingParams
from selflen.errors import SelflenError
from selflen.groups import EvaluateConfig
from selflen.stages import evaluate_self
from selflen.stages.common import StageResult, Table, engine_failure, failed_answers
from selflen.stages.records import Instruction
from selflen.store import Stage, write_json, write_jsonl

BUDGET_BOUND_RATE = 0.1  # above this finish-by-budget rate the budget, not the model, set the length


@dataclass(frozen=True)
class EvaluateSettings:
    evaluate: EvaluateConfig
    point: str  # "0" (base), "1".."K", "final"
    max_new_tokens: int  # length.evaluate_tokens
    seed: int
    self_split: evaluate_self.SelfSplitSettings | None = None  # the held-out self-instructed split, answered too


@dataclass(frozen=True)
class EvaluateInputs:
    """What every point answers, built once per run (``pipeline.evaluation_inputs``): the benchmark slice
    (``load_rows``) and the held-out self-instructed split (``iter_0/instruct``'s accepted instructions, answered
    when the settings carry ``self_split``)."""

    rows: Sequence[dict[str, Any]]
    split: Sequence[Instruction] = ()


def settings(cfg: TrainConfig, point: Point) -> EvaluateSettings:
    e = cfg.evaluate
    split = e.self_instructed > 0 and str(point) != FINAL  # the final model follows length constraints
    return EvaluateSettings(evaluate=e, point=str(point), max_new_tokens=cfg.length.evaluate_tokens, seed=cfg.seed,
                            self_split=evaluate_self.settings(cfg) if split else None)


def load_rows(e: EvaluateConfig, seed: int, data_dir: Path | None, online: bool = False) -> list[dict[str, Any]]:
    """The held-out slice of ``e.benchmark``; raises ``FileNotFoundError`` (naming what to do) when it is missing."""
    rows = load_benchmark(e.benchmark, data_dir=data_dir, online=online)
    return slice_rows(rows, language=list(e.languages) or None, n_per_cell=e.n_per_cell, seed=seed)


def length_summary(scored: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """How long the answers are and whether the budget cut them.

    >>> rep = lambda eff: {"effective_words": eff, "repeated_10gram_rate": 0.0}
    >>> length_summary([{"words": 10, "hit_budget": True, "repetition": rep(9)},
    ...                 {"words": 20, "hit_budget": False, "repetition": rep(20)}])
    {'n': 2, 'mean_words': 15.0, 'median_words': 15.0, 'effective_words': 14.5, 'repeated_10gram_rate': 0.0, \
'finish_by_budget_rate': 0.5, 'budget_bound': True}
    """
    if not scored:
        return {"n": 0}
    words = [r["words"] for r in scored]
    budget_rate = sum(bool(r.get("hit_budget")) for r in scored) / len(scored)
    return {
        "n": len(scored),
        "mean_words": round(statistics.fmean(words), 2),
        "median_words": float(statistics.median(words)),
        "effective_words": round(statistics.fmean(r["repetition"]["effective_words"] for r in scored), 2),
        "repeated_10gram_rate": round(statistics.fmean(r["repetition"]["repeated_10gram_rate"] for r in scored), 4),
        "finish_by_budget_rate": round(budget_rate, 4),
        "budget_bound": budget_rate > BUDGET_BOUND_RATE,
    }


def run(stage: Stage, inputs: EvaluateInputs, s: EvaluateSettings, engine: Engine) -> StageResult:
    """Answer the benchmark slice (and, with ``s.self_split``, the self-instructed split) in one engine call; score
    the benchmark's answers with its own formulas; write ``scored.jsonl``, ``summary.json`` and
    ``self_instructed.jsonl``; report the scored answers as the table ``eval/generations``."""
    rows, split = inputs.rows, inputs.split
    params = SamplingParams(
        temperature=s.evaluate.temperature,
        top_p=s.evaluate.top_p,
        top_k=s.evaluate.top_k,
        repetition_penalty=s.evaluate.repetition_penalty,
        max_new_tokens=s.max_new_tokens,
        seed=s.seed,
    )
    reqs = benchmark_requests(rows, s.evaluate.benchmark, params)
    items, self_reqs = evaluate_self.requests(split, s.self_split, params, s.seed) if s.self_split else ([], [])
    results = engine.generate(reqs + self_reqs, desc=f"evaluate {s.evaluate.benchmark} ({len(reqs)})"
                              + (f" + self-instructed ({len(self_reqs)})" if self_reqs else ""))
    if not results:  # a score over nothing is not an evaluation
        raise SelflenError(f"{stage.name}: nothing to evaluate (0 benchmark rows, 0 self-instructed instructions); "
                           "check the evaluate group's slice settings, or set evaluate.enabled=false")
    failed, cause = failed_answers(results)
    if failed:  # scores over engine errors are not an evaluation: not done, the next run asks again
        raise engine_failure(stage.name, engine.name, failed, len(results), cause)
    responses = response_rows(rows, results[:len(reqs)])
    for r in responses:
        r["hit_budget"] = r.get("finish_reason") == "length"
    scored, summary = score_rows(responses, s.evaluate.benchmark)
    for r in scored:
        r["repetition"]["repeated_10gram_rate"] = round(repeated_ngram_rate(r["response"], 10), 4)
    summary["length"] = length_summary(scored)
    write_jsonl(stage.dir / "scored.jsonl", scored)
    write_json(stage.dir / "summary.json", summary)
    extra: dict[str, Any] = {}
    if s.self_split:
        own = evaluate_self.rows(items, results[len(reqs):], s.self_split)
        write_jsonl(stage.dir / evaluate_self.ROWS_FILE, own)
        ok = [r for r in own if r["status"] == "ok"]
        extra["self_instructed"] = {"n": len(ok), "hit_budget": sum(r["finish_reason"] == "length" for r in ok),
                                    "mean_words": round(statistics.fmean(r["words"] for r in ok), 2) if ok else None}
    name = "base" if s.point == "0" else s.point
    plot = scatter_plot(scored, stage.dir / "scatter.png", title=f"{name}: required vs produced words")
    metrics = log_metrics(summary, "eval")
    metrics.update({f"eval/length/{k}": float(v) for k, v in summary["length"].items() if k != "n"})
    metrics.update({f"eval/self_instructed/{k}": float(v) for k, v in (extra.get("self_instructed") or {}).items()
                    if v is not None and k != "n"})
    return StageResult(
        counts={"rows": len(scored), "hit_budget": sum(r["hit_budget"] for r in scored)},
        metrics=metrics,
        extra={"length": summary["length"], **extra},
        images={f"plots/eval_{name}_scatter": str(plot)},
        tables={"eval/generations": generations_table(scored)},
    )


def generations_table(scored: Sequence[dict[str, Any]]) -> Table:
    """The scored answers as a table: prompt, required and produced words, score, finish reason."""
    return Table(("id", "prompt", "required_words", "produced_words", "score", "finish_reason"), [
        [r.get("id"), str(r.get("query") or r.get("prompt") or "")[:2000], r.get("required"), r.get("words"),
         r.get("score"), r.get("finish_reason")] for r in scored])
