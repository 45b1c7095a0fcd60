"""Python API used by the CLI and by the training pipeline's evaluate stage.

``score_rows(rows, benchmark)`` adds ``words``, ``score`` and friends to each row and returns a summary;
``scatter_plot`` draws required vs produced words; ``required_words`` gives one target length per row.

Benchmarks and their row contracts (each row also carries the model's ``response``):

* ``longen``: ``type`` (about|range|above|below) and ``constraint``; ``score`` in [0, 1].
* ``longbench_write`` (also ``longbench_write_en``, ``longwrite_ruler``): ``length``; ``score`` = S_l in [0, 100];
  the hit window used for hit/over/under rates is ``length`` ± 10 % (selflen's choice, row field ``tolerance``).
* ``lifebench``: either ``length`` plus optional ``mode`` (equal|at_most|at_least, default equal), or LonGen's
  ``type`` + ``constraint`` (mapped by :func:`evaluation.scorers.lifebench_spec_from_longen`); ``score`` = LS in
  [0, 100] and ``deviation`` = LD as a fraction. An optional ``tolerance`` (default 0.1) sets the equal-mode
  hit window.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from evaluation import plot_helpers, repetition, scorers
from evaluation.benchmarks import get_spec, lbw_bucket, longen_flag, prompt_language
from evaluation.counters import get_counter
from selflen.engines.base import Request, SamplingParams
from selflen.jsonl import BadRow, RowError

__all__ = [
    "FAMILIES",
    "benchmark_requests",
    "default_counter",
    "family",
    "log_metrics",
    "required_words",
    "response_rows",
    "scatter_plot",
    "score_row",
    "score_rows",
    "summarize",
]

FAMILIES = {
    "longen": "longen",
    "longbench_write": "longbench_write",
    "longbench_write_en": "longbench_write",
    "longwrite_ruler": "longbench_write",
    "lifebench": "lifebench",
}
_DEFAULT_COUNTER = {"longen": "longen", "longbench_write": "longbench_write", "lifebench": "lifebench"}
_SCALE = {"longen": 1.0, "longbench_write": 100.0, "lifebench": 100.0}
REPETITION_KEYS = ("distinct_2", "distinct_4", "repeated_4gram_rate", "compression_ratio", "effective_ratio")


def family(benchmark: str) -> str:
    """The scoring family of a benchmark name (``longen``, ``longbench_write`` or ``lifebench``).

    >>> family("longwrite_ruler")
    'longbench_write'
    """
    try:
        return FAMILIES[benchmark]
    except KeyError:
        raise KeyError(f"Unknown benchmark {benchmark!r}. Available: {', '.join(FAMILIES)}.") from None


def default_counter(benchmark: str) -> str:
    """The reference counter of a benchmark.

    >>> default_counter("longbench_write_en")
    'longbench_write'
    """
    return _DEFAULT_COUNTER[family(benchmark)]


def _field(row: dict[str, Any], name: str) -> Any:
    if name not in row or row[name] is None:
        raise ValueError(f"missing field {name!r}")
    return row[name]


def _positive_number(row: dict[str, Any], name: str) -> float:
    value = _field(row, name)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"field {name!r} is not a number: {value!r}") from None
    if not number > 0 or math.isinf(number):
        raise ValueError(f"field {name!r} must be a positive number, got {value!r}")
    return number


def _lifebench_spec(row: dict[str, Any]) -> tuple[float, str, tuple[float, float]]:
    if "length" in row:
        required = _positive_number(row, "length")
        mode = str(row.get("mode") or "equal")
        tolerance = float(row.get("tolerance", 0.1))
        return required, mode, scorers.lifebench_window(required, mode, tolerance)
    return scorers.lifebench_spec_from_longen(str(_field(row, "type")), str(_field(row, "constraint")))


def required_words(row: dict[str, Any], benchmark: str) -> float:
    """One target length per row: LonGen's window midpoint, LongBench-Write's ``length``, LIFEBench's target.

    >>> required_words({"type": "about", "constraint": "around 2000 words"}, "longen")
    2000.0
    >>> required_words({"length": 300}, "longbench_write")
    300.0
    """
    fam = family(benchmark)
    if fam == "longen":
        return scorers.longen_target(str(_field(row, "type")), str(_field(row, "constraint")))
    if fam == "longbench_write":
        return _positive_number(row, "length")
    return _lifebench_spec(row)[0]


def score_row(row: dict[str, Any], benchmark: str, counter: Callable[[str], int]) -> dict[str, Any]:
    """Score one row; raises ``ValueError`` naming the problem for a malformed row. Returns a new dict with
    ``words``, ``score``, ``required``, ``window``, ``position`` (under|hit|over) and ``repetition`` added."""
    response = _field(row, "response")
    if not isinstance(response, str):
        raise ValueError(f"field 'response' must be a string, got {type(response).__name__}")
    fam = family(benchmark)
    words = counter(response)
    out = dict(row)
    if fam == "longen":
        a, b = scorers.longen_window(str(_field(row, "type")), str(_field(row, "constraint")))
        out.update(required=(a + b) / 2.0, score=scorers.longen_score(words, a, b))
        if "flagged" not in out:
            reason = longen_flag(row)
            out.update(flagged=reason is not None, flag_reason=reason)
    elif fam == "longbench_write":
        required = _positive_number(row, "length")
        out.update(required=required, score=scorers.lbw_length_score(required, words))
        out.setdefault("range", lbw_bucket(required))
        if "prompt" in row:
            out.setdefault("language", prompt_language(str(row["prompt"])))
        a, b = scorers.lifebench_window(required, "equal", float(row.get("tolerance", 0.1)))
    else:
        required, mode, (a, b) = _lifebench_spec(row)
        out.update(
            required=required,
            mode=mode,
            score=scorers.lifebench_length_score(required, words, mode),
            deviation=scorers.length_deviation(required, words),
        )
    out.update(
        words=words,
        window=[a, b if math.isfinite(b) else None],
        position=scorers.window_position(words, a, b),
        repetition=repetition.repetition_metrics(response, counter, words),
    )
    return out


def _mean(values: Iterable[float]) -> float | None:
    vals = list(values)
    return sum(vals) / len(vals) if vals else None


def _group_stats(rows: Sequence[dict[str, Any]], fam: str) -> dict[str, Any]:
    n = len(rows)
    stats: dict[str, Any] = {
        "n": n,
        "score": _mean(r["score"] for r in rows),
        "mean_words": _mean(r["words"] for r in rows),
        "mean_required": _mean(r["required"] for r in rows),
        "hit_rate": sum(r["position"] == "hit" for r in rows) / n if n else None,
        "over_rate": sum(r["position"] == "over" for r in rows) / n if n else None,
        "under_rate": sum(r["position"] == "under" for r in rows) / n if n else None,
    }
    if fam == "lifebench":
        stats["mean_abs_deviation"] = _mean(abs(r["deviation"]) for r in rows)
    quality = [r["quality"] for r in rows if isinstance(r.get("quality"), (int, float))]
    if quality:
        stats["quality"] = _mean(quality)
        stats["n_quality"] = len(quality)
        if fam == "longbench_write":
            both = [scorers.overall_lbw_score(r["score"], r["quality"]) for r in rows if r.get("quality") is not None]
            stats["overall_S"] = _mean(both)
    return stats


def _by(rows: Sequence[dict[str, Any]], key: str, fam: str) -> dict[str, Any]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[str(r.get(key))].append(r)
    return {k: _group_stats(v, fam) for k, v in sorted(groups.items())}


def _variance(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    groups: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        key = r.get("id") or r.get("query") or r.get("prompt")
        groups[str(key)].append(float(r["words"]))
    multi = [v for v in groups.values() if len(v) >= 2]
    if not multi:
        return None
    spreads = [repetition.length_spread(v) for v in multi]
    return {
        "prompts": len(multi),
        "mean_samples": _mean(len(v) for v in multi),
        "mean_std": _mean(s["std"] for s in spreads),
        "mean_cv": _mean(s["cv"] for s in spreads),
    }


def summarize(
    scored: Sequence[dict[str, Any]], benchmark: str, counter: str, bad_rows: Sequence[BadRow] = ()
) -> dict[str, Any]:
    """The summary of scored rows (field meanings in ``evaluation/README.md``)."""
    fam = family(benchmark)
    flagged = [r for r in scored if r.get("flagged")]
    summary: dict[str, Any] = {
        "benchmark": benchmark,
        "family": fam,
        "counter": counter,
        "score_scale": _SCALE[fam],
        "n": len(scored),
        "bad_rows": len(bad_rows),
        "bad_row_lines": [{"line": line, "reason": reason} for line, reason in bad_rows],
        "flagged": len(flagged),
        "flagged_ids": [r.get("id") or f"line {r.get('_line')}" for r in flagged],
        "overall": _group_stats(scored, fam),
    }
    if flagged:
        summary["overall_unflagged"] = _group_stats([r for r in scored if not r.get("flagged")], fam)
    typed = [r for r in scored if "type" in r]
    summary["by_type"] = _by(typed, "type", fam) if typed else {}
    for key, name in (("language", "by_language"), ("range", "by_bucket"), ("mode", "by_mode")):
        if any(key in r for r in scored):
            summary[name] = _by(scored, key, fam)
    summary["repetition"] = {k: _mean(r["repetition"][k] for r in scored) for k in REPETITION_KEYS}
    summary["repetition"]["mean_effective_words"] = _mean(r["repetition"]["effective_words"] for r in scored)
    reasons = [r.get("finish_reason") for r in scored if r.get("finish_reason") is not None]
    if reasons:
        finished = [r for r in scored if r.get("finish_reason") is not None]
        summary["finish"] = {
            "n": len(reasons),
            "length_rate": repetition.finish_length_rate(reasons),
            "early_stop_rate": repetition.early_stop_rate(reasons, [r["position"] == "under" for r in finished]),
            "error_rate": sum(r == "error" for r in reasons) / len(reasons),
        }
    summary["variance"] = _variance(scored)
    return summary


def score_rows(
    rows: Iterable[dict[str, Any]],
    benchmark: str,
    counter: str | None = None,
    skip_bad: bool = False,
    source: str = "<rows>",
    bad_rows: Sequence[BadRow] = (),
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Score rows (benchmark rows plus ``response``) and summarize them.

    ``counter`` defaults to the benchmark's reference counter. A malformed row raises ``RowError`` naming
    ``source`` and its line (``row["_line"]`` or its 1-based position) unless ``skip_bad``, in which case it is
    left out and counted in ``summary["bad_rows"]`` (together with any ``bad_rows`` passed in).

    >>> rows = [{"type": "about", "constraint": "around 4 words", "response": "one two three four"}]
    >>> scored, summary = score_rows(rows, "longen")
    >>> scored[0]["words"], scored[0]["score"], summary["by_type"]["about"]["score"]
    (4, 1.0, 1.0)
    """
    counter_name = counter or default_counter(benchmark)
    count = get_counter(counter_name)
    scored: list[dict[str, Any]] = []
    bad = list(bad_rows)
    for index, row in enumerate(rows, start=1):
        line = int(row.get("_line", index))
        try:
            scored.append(score_row(row, benchmark, count))
        except (ValueError, TypeError) as exc:
            if not skip_bad:
                raise RowError(source, line, str(exc)) from None
            bad.append((line, str(exc)))
    bad.sort()
    return scored, summarize(scored, benchmark, counter_name, bad)


def log_metrics(summary: dict[str, Any], prefix: str = "eval") -> dict[str, float]:
    """Flatten a summary into ``prefix/...`` scalars for a metrics logger (W&B): ``overall``, ``by_*`` groups,
    ``repetition``, ``finish``, ``variance`` and ``judge`` numbers; ``None`` values are left out.

    >>> log_metrics({"n": 2, "overall": {"score": 0.5, "n": 2}, "by_type": {"about": {"score": 1.0}}, "flagged": 0})
    {'eval/n': 2.0, 'eval/flagged': 0.0, 'eval/score': 0.5, 'eval/type/about/score': 1.0}
    """
    out: dict[str, float] = {}
    for key in ("n", "bad_rows", "flagged"):
        if isinstance(summary.get(key), (int, float)):
            out[f"{prefix}/{key}"] = float(summary[key])
    for key, value in (summary.get("overall") or {}).items():
        if key != "n" and isinstance(value, (int, float)):
            out[f"{prefix}/{key}"] = float(value)
    for group in ("by_type", "by_language", "by_bucket", "by_mode"):
        for name, stats in (summary.get(group) or {}).items():
            for key, value in stats.items():
                if key != "n" and isinstance(value, (int, float)):
                    out[f"{prefix}/{group[3:]}/{name}/{key}"] = float(value)
    for section in ("repetition", "finish", "variance", "judge"):
        for key, value in (summary.get(section) or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[f"{prefix}/{section}/{key}"] = float(value)
    return out


def scatter_plot(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Log-log scatter of required vs produced words (scored rows: ``required``, ``words``, ``type``), with the
    y = x line. Empty answers are drawn at 1 word so they stay visible on the log axis."""
    groups: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        groups[str(r.get("type", "all"))].append((float(r["required"]), float(r["words"])))
    drawn = plot_helpers.scatter(dict(sorted(groups.items())), path, title=title, log=True, keep_empty=True)
    assert drawn is not None  # keep_empty: always drawn
    return drawn


def benchmark_requests(rows: Sequence[dict[str, Any]], benchmark: str, params: SamplingParams,
                       adapter: str | None = None) -> list[Request]:
    """One request per benchmark row: its prompt as the only user turn."""
    prompt_field = get_spec(benchmark).prompt_field
    return [Request(messages=[{"role": "user", "content": str(r[prompt_field])}], params=params, adapter=adapter)
            for r in rows]


def response_rows(rows: Sequence[dict[str, Any]], results: Sequence[Any]) -> list[dict[str, Any]]:
    """One output row per (benchmark row, sample): the row plus ``response``, ``finish_reason``, ``tokens``,
    ``sample`` and ``generation_error`` (None unless the engine failed; a failed row keeps an empty response)."""
    return [dict(row, response=completion.text, finish_reason=completion.finish_reason, tokens=completion.tokens,
                 sample=sample, generation_error=completion.error)
            for row, result in zip(rows, results, strict=True) for sample, completion in enumerate(result.outputs)]
