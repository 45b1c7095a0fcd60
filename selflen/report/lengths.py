"""The Generator's length at one point, from plain data: word statistics of a role, and the held-out length of an
evaluate folder (its ``summary.json`` and ``scored.jsonl``). A leaf module: ``runs`` and ``summary`` both use it."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from selflen.report.plots import is_number

NGRAM_N = 10  # the repeated n-gram rate is over 10-grams, the window of the English filter


def length_stats(words: Sequence[float]) -> dict[str, float] | None:
    """Mean, median, 90th percentile (linear interpolation) and count; None for no words.

    >>> length_stats([10, 20, 30, 40])
    {'mean': 25.0, 'median': 25.0, 'p90': 37.0, 'n': 4}
    >>> length_stats([]) is None
    True
    """
    values = sorted(float(w) for w in words)
    if not values:
        return None
    pos = 0.9 * (len(values) - 1)
    lo, frac = int(pos), pos - int(pos)
    p90 = values[lo] + (values[min(lo + 1, len(values) - 1)] - values[lo]) * frac
    return {"mean": round(statistics.fmean(values), 1), "median": round(statistics.median(values), 1),
            "p90": round(p90, 1), "n": len(values)}


def _mean(values: Iterable[Any]) -> float | None:
    numbers = [float(v) for v in values if is_number(v)]
    return statistics.fmean(numbers) if numbers else None


def _row_repetition(row: Mapping[str, Any], key: str) -> Any:
    rep = row.get("repetition")
    return rep.get(key) if isinstance(rep, Mapping) else None


def repeated_rate(row: Mapping[str, Any]) -> float | None:
    """A row's repeated n-gram rate (``NGRAM_N``): from the row's ``repetition`` block, else from its text."""
    rate = _row_repetition(row, f"repeated_{NGRAM_N}gram_rate")
    if is_number(rate):
        return float(rate)
    if isinstance(row.get("response"), str):
        from evaluation.repetition import repeated_ngram_rate

        return repeated_ngram_rate(row["response"], NGRAM_N)
    return None


def _budget_rate(summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> float | None:
    """Share of answers stopped by the token budget (``finish_reason == "length"``); None when unknown."""
    reasons = [r.get("finish_reason") for r in rows if r.get("finish_reason") is not None]
    if reasons:
        return sum(r == "length" for r in reasons) / len(reasons)
    rate = (summary.get("finish") or {}).get("length_rate")
    return float(rate) if is_number(rate) else None


def _ended_mean(rows: Sequence[Mapping[str, Any]]) -> float | None:
    """Mean words of the answers the model ended itself (any finish reason but ``length``); None when every answer
    hit the budget or no row says how it finished. Apart from answers that loop to the budget, this is the
    length the model chooses."""
    known = [r for r in rows if r.get("finish_reason") is not None]
    return _mean(r["words"] for r in known if r["finish_reason"] != "length") if known else None


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def eval_length_row(summary: Mapping[str, Any] | None, scored: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The Generator's length on the held-out slice at one evaluation point, from the evaluate stage's
    ``summary.json`` (``evaluation.api.summarize``) and ``scored.jsonl`` rows; a value neither holds is None.

    >>> rep = lambda eff, rate: {"effective_words": eff, "repeated_10gram_rate": rate}
    >>> row = eval_length_row({"overall": {"score": 0.5}}, [
    ...     {"words": 100, "finish_reason": "length", "repetition": rep(80, 0.2)},
    ...     {"words": 300, "finish_reason": "stop", "repetition": rep(300, 0.0)}])
    >>> row["mean_words"], row["effective_words"], row["finish_by_budget_rate"], row["repeated_ngram_rate"], row["n"]
    (200.0, 190.0, 0.5, 0.1, 2)
    >>> row["ended_mean_words"]  # the answer that stopped by itself
    300.0
    """
    summary = summary or {}
    overall = summary.get("overall") or {}
    rows = [r for r in scored if is_number(r.get("words"))]
    words = [float(r["words"]) for r in rows]
    mean_words = statistics.fmean(words) if words else overall.get("mean_words")
    effective = _mean(_row_repetition(r, "effective_words") for r in rows)
    if effective is None:
        effective = (summary.get("repetition") or {}).get("mean_effective_words")
    repeated = _mean(repeated_rate(r) for r in rows)
    if repeated is None:
        repeated = (summary.get("repetition") or {}).get(f"repeated_{NGRAM_N}gram_rate")
    score = overall.get("score")
    if score is None and rows:
        score = _mean(r.get("score") for r in rows)
    return {
        "mean_words": _round(mean_words if is_number(mean_words) else None, 1),
        "median_words": round(statistics.median(words), 1) if words else None,
        "effective_words": _round(effective if is_number(effective) else None, 1),
        "ended_mean_words": _round(_ended_mean(rows), 1),
        "repeated_ngram_rate": _round(repeated if is_number(repeated) else None, 4),
        "ngram_n": NGRAM_N,
        "finish_by_budget_rate": _round(_budget_rate(summary, rows), 4),
        "score": score if is_number(score) else None,
        "n": len(rows) if rows else summary.get("n"),
    }


def _row_key(row: Mapping[str, Any]) -> tuple[Any, Any]:
    return row.get("id"), row.get("sample")


def paired_growth(base: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]) -> float | None:
    """Geometric mean, over the held-out prompts both points answered, of the ratio of a point's words to the
    base model's. Answers pair up by ``id`` and ``sample``; rows without an id are left out. Each prompt counts
    once, so a few answers that loop to the budget move it less than they move the ratio of means. None when no
    prompt pairs up.

    >>> base = [{"id": "a", "words": 100}, {"id": "b", "words": 400}, {"id": "c", "words": 50}]
    >>> paired_growth(base, [{"id": "a", "words": 200}, {"id": "b", "words": 200}])  # 2x and 0.5x
    1.0
    >>> paired_growth(base, [{"id": "z", "words": 10}]) is None  # nothing pairs up; nor do rows without an id
    True
    """
    def usable(row: Mapping[str, Any]) -> bool:
        return row.get("id") is not None and is_number(row.get("words")) and row["words"] > 0

    words = {_row_key(r): float(r["words"]) for r in base if usable(r)}
    logs = [math.log(float(r["words"]) / words[_row_key(r)]) for r in rows if usable(r) and _row_key(r) in words]
    return round(math.exp(statistics.fmean(logs)), 3) if logs else None
