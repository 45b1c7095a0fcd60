"""A run's ``summary.json``, its end-of-run table and its run plots (length histogram, growth, and the verdict
when the run evaluated).

``run_summary`` and ``write_run_plots`` read the run's folders (word counts of each iteration's generate and extend
stages, each evaluate folder's ``summary.json`` and ``scored.jsonl`` through ``selflen.report.runs``; the stage
timings come from the manifests the pipeline passes); ``build_summary``, the table and the verdict work on plain
data. A role that produced nothing in an iteration is ``None`` here and "—" in the table: missing is never zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selflen.report.lengths import length_stats
from selflen.report.links import BARS, LINKS, iteration_links, weakest_link
from selflen.report.paired import (
    HEADLINE,
    answer_values,
    excludes_one,
    format_interval,
    pair_rows,
    paired_bootstrap,
    point_values,
)
from selflen.report.plots import Point, is_number, point_key, point_label

if TYPE_CHECKING:
    from selflen.store import RunLayout

BUDGET_THRESHOLD = 0.1  # above this share of answers stopped by max_new_tokens, the budget set the length
ROLES = ("generator", "extender")
MISSING = "—"


def growth(eval_rows: Mapping[str, Mapping[str, Any]], key: str = HEADLINE) -> dict[str, float | None]:
    """Held-out ``key`` (effective words by default: loops count once) at each point over the base model's
    (point "0"); None where either is missing.

    >>> growth({"0": {"mean_words": 200.0}, "1": {"mean_words": 300.0}, "2": {"mean_words": None}}, "mean_words")
    {'0': 1.0, '1': 1.5, '2': None}
    """
    base = (eval_rows.get("0") or {}).get(key)
    out = {}
    for point, row in eval_rows.items():
        value = (row or {}).get(key)
        out[point] = round(value / base, 3) if is_number(base) and base > 0 and is_number(value) else None
    return out


def budget_bound(eval_rows: Mapping[str, Mapping[str, Any]], threshold: float = BUDGET_THRESHOLD) -> list[str]:
    """Points where more than ``threshold`` of the held-out answers were stopped by the token budget."""
    return [p for p, row in eval_rows.items()
            if is_number((row or {}).get("finish_by_budget_rate")) and row["finish_by_budget_rate"] > threshold]


def budget_note(points: Sequence[str], threshold: float = BUDGET_THRESHOLD) -> str | None:
    """One line saying where the token budget, not the model, set the length; None when nowhere."""
    if not points:
        return None
    where = ", ".join(point_label(p) for p in points)
    return (f"the budget, not the model, set the length at {where}: over {threshold:.0%} of the held-out answers "
            "stopped at max_new_tokens (raise eval.max_new_tokens to measure them)")


def verdict(interval: Mapping[str, Any] | None, label: str, n: Any = None) -> str:
    """One sentence: did the Generator at ``label`` write longer than the base model on the held-out prompts, and
    does the 95 % interval of its effective-words ratio exclude no change?

    >>> verdict({"ratio": 1.31, "low": 1.12, "high": 1.55}, "iteration 2", 60)[:78]
    'Yes: the iteration 2 Generator wrote longer than the base model on 60 held-out'
    >>> verdict({"ratio": 1.1, "low": 0.9, "high": 1.3}, "iteration 2").split(": ")[0]
    'Not shown'
    >>> verdict(None, "iteration 1")[:11]
    'No verdict:'
    """
    if not interval or not is_number(interval.get("ratio")):
        return f"No verdict: {label} has no paired evaluation against the base model (evaluate.base=false?)."
    ratio, where = interval["ratio"], f"on {n} held-out prompts" if n else "on the held-out prompts"
    text = f"{format_interval(interval)} the base model's effective words (95 % paired bootstrap interval)"
    excluded = excludes_one(interval)
    if ratio > 1 and excluded:
        return f"Yes: the {label} Generator wrote longer than the base model {where}: {text}, excluding no change."
    if ratio < 1 and excluded:
        return f"No: the {label} Generator wrote shorter than the base model {where}: {text}, excluding no change."
    return (f"Not shown: the {label} Generator wrote {text} {where}; the interval includes no change (1.00x), so "
            "this is inside sampling noise.")


def headline(evals: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """The run's headline: the last evaluated point's effective-words ratio to the base, its interval, the verdict."""
    points = [p for p in _points(evals) if p != "0"]
    if not points:
        return None
    point = points[-1]
    interval = ((evals[point] or {}).get("intervals") or {}).get(HEADLINE)
    label = "final" if point == "final" else f"iteration {point}"
    iv = interval or {}
    return {"point": point, "measure": HEADLINE, "base_value": iv.get("base"), "point_value": iv.get("point"),
            **{k: iv.get(k) for k in ("ratio", "low", "high", "n", "level")},
            "verdict": verdict(iv, label, iv.get("n"))}


def _points(keys: Iterable[Point]) -> list[str]:
    return sorted({str(k).removeprefix("iter_") for k in keys}, key=point_key)


def build_summary(per_iter: Mapping[int | str, Mapping[str, Any]],
                  eval_rows: Mapping[Point, Mapping[str, Any]] | None = None,
                  stage_seconds: Mapping[str, float] | None = None, final: Mapping[str, Any] | None = None,
                  **extras: Any) -> dict[str, Any]:
    """The ``summary.json`` of a run.

    ``per_iter[k]`` holds the word lists ``generator`` (Generator answers of iteration k) and ``extender``
    (accepted Extender outputs) plus the counts ``instructions``, ``accepted_extensions`` and ``kept``;
    ``eval_rows`` maps points (0 = base, 1..K, "final") to :func:`eval_length_row` results; ``final`` (the
    length-control stages' results) and ``extras`` (run dir, model, plots...) are passed through.
    """
    iterations = {}
    for k in sorted(per_iter, key=point_key):
        v = per_iter[k]
        iterations[str(k)] = {
            **{role: length_stats(v.get(role) or []) for role in ROLES},
            **{key: v.get(key) for key in ("instructions", "accepted_extensions", "kept")},
        }
    named = {str(k).removeprefix("iter_"): dict(v or {}) for k, v in (eval_rows or {}).items()}
    evals = {p: named[p] for p in _points(named)}
    bound = budget_bound(evals)
    summary: dict[str, Any] = {**extras, "iterations": iterations, "eval": evals, "growth": growth(evals),
                               "growth_mean_words": growth(evals, "mean_words"), "budget_bound": bound}
    if (note := budget_note(bound)) is not None:
        summary["budget_note"] = note
    summary["headline"] = headline(evals)
    summary["stage_seconds"] = dict(stage_seconds or {})
    summary.update(final or {})
    return summary


def _cell(value: Any, spec: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return format(value, spec) if spec and is_number(value) else str(value)


def _stat_mean(stats: Any) -> Any:
    return stats.get("mean") if isinstance(stats, Mapping) else None


TABLE = (("point", 5), ("instr", 5), ("gen words", 9), ("ext words", 9), ("accepted", 8), ("kept", 4),
         ("eval words", 10), ("by budget", 9), ("growth", 6))


def _table_rows(summary: Mapping[str, Any]) -> list[list[str]]:
    iterations, evals = summary.get("iterations") or {}, summary.get("eval") or {}
    ratios = summary.get("growth") or {}
    rows = []
    for p in _points([*iterations, *evals]):
        it, ev = iterations.get(p) or {}, evals.get(p) or {}
        budget = ev.get("finish_by_budget_rate")
        rows.append([point_label(p), _cell(it.get("instructions")), _cell(_stat_mean(it.get("generator")), ".1f"),
                     _cell(_stat_mean(it.get("extender")), ".1f"), _cell(it.get("accepted_extensions")),
                     _cell(it.get("kept")), _cell(ev.get("mean_words"), ".1f"),
                     _cell(budget * 100 if is_number(budget) else None, ".0f") + ("%" if is_number(budget) else ""),
                     _cell(ratios.get(p), ".2f") + ("x" if is_number(ratios.get(p)) else "")])
    return rows


VERDICT_TABLE = (("point", 5), ("eff. words", 10), ("ended", 5), ("rep10", 5), ("effective words / base [95 %]", 30))


def verdict_rows(summary: Mapping[str, Any]) -> list[list[str]]:
    """Per point: effective words, ended rate, repeated-10-gram rate, effective-words ratio to the base [interval]."""
    rows = []
    for p, ev in (summary.get("eval") or {}).items():
        ev = ev or {}
        ended = 1 - ev["finish_by_budget_rate"] if is_number(ev.get("finish_by_budget_rate")) else None
        interval = (ev.get("intervals") or {}).get(HEADLINE)
        ratio = "1.00x" if p == "0" and is_number(ev.get("effective_words")) else format_interval(interval)
        rows.append([point_label(p), _cell(ev.get("effective_words"), ".1f"),
                     _cell(ended * 100 if ended is not None else None, ".0f") + ("%" if ended is not None else ""),
                     _cell(ev.get("repeated_ngram_rate"), ".3f"), ratio])
    return rows


def format_verdict(summary: Mapping[str, Any]) -> list[str]:
    """The verdict block: the per-point table and the headline sentence (also the head of the compare report)."""
    rows = verdict_rows(summary)
    if not rows:
        return ["No verdict: nothing was evaluated (evaluate.enabled=false)."]
    n = next((ev.get("n") for ev in (summary.get("eval") or {}).values() if ev and ev.get("n")), None)
    lines = [f"held-out length ({n} benchmark prompts, the same prompts and seeds at every point):" if n else
             "held-out length:", "  ".join(f"{name:>{width}}" for name, width in VERDICT_TABLE)]
    lines += ["  ".join(f"{cell:>{width}}" if i < 4 else cell for i, (cell, (_, width))
                        in enumerate(zip(row, VERDICT_TABLE, strict=True))) for row in rows]
    if (head := summary.get("headline")) is not None:
        lines.append(head["verdict"])
    return lines


def format_links(summary: Mapping[str, Any]) -> list[str]:
    """One line per iteration: target gain, fit and transfer, and the first link below its bar."""
    lines = []
    for k, row in (summary.get("links") or {}).items():
        def times(key: str, row: Mapping[str, Any] = row) -> str:
            return f"{row[key]:.2f}x" if is_number(row.get(key)) else MISSING

        parts = [f"targets {_cell(row.get('target_words'), '.0f')} words ({times('target_gain')} their answers, "
                 f"{times('target_over_base_ended')} the base's ended answers)",
                 f"fit {_cell(row.get('fit'), '.2f')}", f"transfer {_cell(row.get('transfer'), '.2f')}"]
        lines.append(f"links, iteration {k}: " + "; ".join(parts) + f" -- {weakest_link(row)[1]}")
    return lines


def format_summary(summary: Mapping[str, Any]) -> str:
    """The table printed at the end of a run: one row per point (base, 1..K, final); missing shows as "—"."""
    lines = []
    if summary.get("model"):
        lines.append(f"selflen run: {summary['model']}" + (f" via {summary['backend']}" if summary.get("backend")
                                                          else ""))
    lines.append("  ".join(f"{name:>{width}}" for name, width in TABLE))
    for row in _table_rows(summary):
        lines.append("  ".join(f"{cell:>{width}}" for cell, (_, width) in zip(row, TABLE, strict=True)))
    scores = {p: (row or {}).get("score") for p, row in (summary.get("eval") or {}).items()}
    if any(is_number(s) for s in scores.values()):
        lines.append("eval length score: " + ", ".join(f"{point_label(p)} {s:.3f}" for p, s in scores.items()
                                                      if is_number(s)))
    if summary.get("budget_note"):
        lines.append(f"note: {summary['budget_note']}")
    if "length_control_examples" in summary:
        lines.append(f"length-control examples: {summary['length_control_examples']}; "
                     f"final model: {summary.get('final_model')}")
    slow = sorted((summary.get("stage_seconds") or {}).items(), key=lambda kv: -kv[1])[:5]
    if slow:
        lines.append("slowest stages: " + ", ".join(f"{n} {s:.0f}s" for n, s in slow))
    lines += format_links(summary)
    lines += ["", *format_verdict(summary)]
    root = Path(summary["run_dir"]) if summary.get("run_dir") else None
    if root is not None:
        lines.append(f"run dir: {root}")
    if summary.get("plots"):
        lines.append(f"plots:   {', '.join(str(root / p if root else p) for p in summary['plots'])}")
    if root is not None:
        lines.append(f"summary: {root / 'summary.json'}")
    if summary.get("wandb"):
        lines.append(f"W&B:     {summary['wandb']}")
    return "\n".join(lines)


def write_run_plots(layout: RunLayout, words_by_iter: Mapping[int, Mapping[str, Sequence[float]]], logger: Any = None,
                    eval_rows: Mapping[Point, Mapping[str, Any]] | None = None,
                    summary: Mapping[str, Any] | None = None) -> list[Path]:
    """``plots/length_histogram.png`` and ``plots/growth.png`` (Generator and Extender mean words per iteration,
    plus the held-out eval mean words per point from base to final), and with a ``summary`` holding evaluations
    ``plots/verdict.png`` (each point's effective-words ratio to the base with its interval, on the benchmark and
    on the self-instructed split, and the three links); each is logged with ``logger.log_image``.

    ``eval_rows`` defaults to what the run's evaluate folders hold (:func:`selflen.report.runs.eval_rows`).
    """
    from selflen.report import plots

    if eval_rows is None:
        from selflen.report.runs import eval_rows as read_eval_rows

        eval_rows = read_eval_rows(layout)
    layout.plots_dir.mkdir(parents=True, exist_ok=True)
    hist = plots.length_histogram(words_by_iter, layout.plots_dir / "length_histogram.png")
    series = {role: {k: _stat_mean(length_stats(w.get(role) or [])) for k, w in words_by_iter.items()}
              for role in ROLES}
    series["held-out eval (Generator)"] = {p: (row or {}).get("mean_words") for p, row in eval_rows.items()}
    styles = {"generator": "-o", "extender": "--s", "held-out eval (Generator)": ":^"}
    curve = plots.growth_curve(series, layout.plots_dir / "growth.png", styles=styles)
    paths = [hist, curve]
    if summary and summary.get("eval"):
        slices = {"benchmark": {p: (row.get("intervals") or {}).get(HEADLINE) for p, row in summary["eval"].items()},
                  "self-instructed split": {p: row.get("growth") for p, row in
                                            (summary.get("self_instructed") or {}).items()}}
        links = {k: {name: v.get(key) for key, name in LINKS} for k, v in (summary.get("links") or {}).items()}
        bars = {name: BARS[key] for key, name in LINKS}
        paths.append(plots.verdict_plot(slices, links, bars, layout.plots_dir / "verdict.png"))
    for path in paths:
        if logger is not None:
            logger.log_image(f"plots/{path.stem}", path)
    return paths


def run_summary(layout: RunLayout, iterations: int, manifests: Mapping[str, Mapping[str, Any]],
                final: Mapping[str, Any] | None = None, **extras: Any) -> dict[str, Any]:
    """Gather a finished run's plain data from its folders (generate and extend records per iteration, every
    evaluate folder) and build its ``summary.json`` (:func:`build_summary`)."""
    from selflen.report.runs import eval_rows as read_eval_rows
    from selflen.store import Stage

    def ok(k: int, stage: str) -> list[dict[str, Any]]:
        return [r for r in Stage.read_records(layout.stage(k, stage)) if r.get("status") == "ok"]

    per_iter = {}
    for k in range(1, iterations + 1):
        instructions = ok(k, "instruct")
        per_iter[k] = {"generator": [r["words"] for r in ok(k, "generate")],
                       "extender": [r["words"] for r in ok(k, "extend")],
                       "instructions": len(instructions), "accepted_extensions": len(ok(k, "extend")),
                       "kept": len(ok(k, "select"))}
    evals = read_eval_rows(layout)
    seconds = {name: m.get("seconds", 0.0) for name, m in manifests.items()}
    summary = build_summary(per_iter, evals, seconds, final, run_dir=str(layout.root), **extras)
    summary["self_instructed"], summary["links"] = self_split_and_links(layout, iterations, summary["eval"])
    last = summary["growth"].get(str(iterations))
    summary["objective"] = last if last is not None else _stat_mean(
        (summary["iterations"].get(str(iterations)) or {}).get("generator"))
    summary["words_by_iter"] = {k: {"generator": v["generator"], "extender": v["extender"]}
                                for k, v in per_iter.items()}
    return summary


def self_split_and_links(layout: RunLayout, iterations: int, evals: Mapping[str, Mapping[str, Any]]
                         ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each point's length on the held-out self-instructed split (its measures and its effective-words interval
    against the base) and each iteration's links (:func:`selflen.report.links.iteration_links`)."""
    from selflen.report.runs import self_rows
    from selflen.store import Stage

    rows = self_rows(layout)
    base = rows.get("0") or []
    split = {p: {**point_values([v for row in r if (v := answer_values(row)) is not None]), "n": len(r),
                 "growth": paired_bootstrap(pair_rows(base, r)) if base else None} for p, r in rows.items()}
    links = {}
    for k in range(1, iterations + 1):
        targets = [r for r in Stage.read_records(layout.stage(k, "select")) if r.get("status") == "ok"]
        point = rows.get(str(k)) or []
        links[str(k)] = iteration_links(targets, evals.get("0"), [float(r["words"]) for r in point],
                                        (split.get(str(k)) or {}).get("growth"),
                                        ((evals.get(str(k)) or {}).get("intervals") or {}).get(HEADLINE),
                                        [float(v["effective_words"]) for r in point if (v := answer_values(r))])
    return split, links


def flat_for_logger(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Scalar ``summary/...`` entries for the tracker: per-iteration role means, per-point held-out lengths."""
    out: dict[str, Any] = {}
    for k, it in (summary.get("iterations") or {}).items():
        for role in ROLES:
            if (mean := _stat_mean(it.get(role))) is not None:
                out[f"summary/iter_{k}/{role}_mean_words"] = mean
    for p, row in (summary.get("eval") or {}).items():
        for key, value in (row or {}).items():
            if is_number(value):
                out[f"summary/eval_{point_label(p)}/{key}"] = value
    for p, ratio in (summary.get("growth") or {}).items():
        if is_number(ratio):
            out[f"summary/growth_{point_label(p)}"] = ratio
    for p, row in (summary.get("eval") or {}).items():
        for measure, interval in ((row or {}).get("intervals") or {}).items():
            for key in ("ratio", "low", "high"):
                if is_number(interval.get(key)):
                    out[f"summary/eval_{point_label(p)}/{measure}_{key}"] = interval[key]
    for k, row in (summary.get("links") or {}).items():
        for key, value in row.items():
            if is_number(value):
                out[f"summary/links/iter_{k}/{key}"] = value
    if (head := summary.get("headline")) is not None:
        out.update({f"summary/headline_{k}": head[k] for k in ("ratio", "low", "high") if is_number(head.get(k))})
    return out


def log_samples(logger: Any, kept: Sequence[Mapping[str, Any]], k: int, limit: int) -> None:
    """A table of (instruction, answer, extension) samples of iteration ``k``'s kept extensions."""
    rows = [[k, r["instruction"], r["response"], r["extended"], r["words_before"], r["words"]] for r in kept[:limit]]
    if rows:
        logger.log_table(f"samples/iter_{k}", ["iteration", "instruction", "answer", "extension", "answer_words",
                                                 "extension_words"], rows)


def engine_errors(manifests: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """Requests an engine failed, by stage, in the stages this summary rests on (each retried until it was
    answered, since a stage with a record the engine failed is never done); empty when there were none."""
    return {name: m["engine"]["errors"] for name, m in manifests.items() if (m.get("engine") or {}).get("errors")}
