"""Length measures that loops cannot inflate, and the paired bootstrap of their ratio to the base model.

Every evaluation point answers the same held-out prompts with the same sampling seed, so point k's answer to a
prompt and the base model's answer to it form a *pair* (keyed by the row's ``id`` and ``sample``). A measure is a
mean over answers (or over the answers that ended by EOS); its growth is the ratio of the point's value to the
base's. The interval resamples pairs with replacement (the same draw of prompts for both sides), so what the
prompts share cancels out and the interval is about the model, not about which prompts were drawn.

Measures (``MEASURES``), per point:

- ``effective_words`` — words left after repeated 10-grams are removed (``evaluation.repetition``): an answer
  that loops to the budget counts for what it says once. The run's headline growth.
- ``ended_words`` — mean words of the answers that ended by EOS (any finish reason but ``length``): the length
  the model chooses.
- ``ended_rate`` — the share of answers that ended by EOS.
- ``repeated_10gram_rate`` — the mean share of repeated 10-grams per answer (lower is better).
- ``mean_words`` — mean words of all answers (what loops inflate; reported, never the headline).

A leaf module: plain rows in, plain dicts out; no file is read here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from selflen.report.lengths import repeated_rate
from selflen.report.plots import is_number

MEASURES = ("effective_words", "ended_words", "ended_rate", "repeated_10gram_rate", "mean_words")
HEADLINE = "effective_words"
LEVEL = 0.95
N_BOOT = 2000
BOOT_SEED = 0  # fixed: the same rows always give the same interval


def answer_values(row: Mapping[str, Any]) -> dict[str, float] | None:
    """One scored answer's values: words, effective words, whether it ended by EOS, repeated 10-gram rate.
    None for a row without a word count.

    >>> answer_values({"words": 120, "finish_reason": "length",
    ...                "repetition": {"effective_words": 40, "repeated_10gram_rate": 0.5}})
    {'words': 120.0, 'effective_words': 40.0, 'ended': 0.0, 'repeated_10gram_rate': 0.5}
    >>> answer_values({"words": 80, "finish_reason": "stop"})["effective_words"]  # no repetition block: all words
    80.0
    """
    if not is_number(row.get("words")):
        return None
    words = float(row["words"])
    rep = row.get("repetition") if isinstance(row.get("repetition"), Mapping) else {}
    effective = rep.get("effective_words")
    rate = repeated_rate(row)
    return {"words": words, "effective_words": float(effective) if is_number(effective) else words,
            "ended": 0.0 if row.get("finish_reason") == "length" else 1.0,
            "repeated_10gram_rate": float(rate) if is_number(rate) else 0.0}


def _key(row: Mapping[str, Any]) -> tuple[Any, Any]:
    return row.get("id"), row.get("sample")


def pair_rows(base: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]
              ) -> list[tuple[dict[str, float], dict[str, float]]]:
    """(base, point) values of the answers both sides gave to the same prompt and sample, in the point's order;
    rows without an id or a word count are left out.

    >>> pairs = pair_rows([{"id": "a", "words": 10}, {"id": "b", "words": 20}],
    ...                   [{"id": "b", "words": 30}, {"id": "z", "words": 5}])
    >>> [(b["words"], p["words"]) for b, p in pairs]
    [(20.0, 30.0)]
    """
    by_key = {_key(r): v for r in base if r.get("id") is not None and (v := answer_values(r)) is not None}
    out = []
    for r in rows:
        if r.get("id") is None or _key(r) not in by_key or (v := answer_values(r)) is None:
            continue
        out.append((by_key[_key(r)], v))
    return out


def _columns(values: Sequence[Mapping[str, float]]) -> dict[str, np.ndarray]:
    return {k: np.array([v[k] for v in values], dtype=float) for k in ("words", "effective_words", "ended",
                                                                          "repeated_10gram_rate")}


def _measure(name: str) -> Callable[[dict[str, np.ndarray], np.ndarray], np.ndarray]:
    """The measure ``name`` as a function of the columns and an (n_draws, n) index matrix: one value per draw
    (NaN where a draw has no answer to average, e.g. no ended answer)."""
    def mean_of(col: str) -> Callable[[dict[str, np.ndarray], np.ndarray], np.ndarray]:
        return lambda c, idx: c[col][idx].mean(axis=1)

    if name == "ended_words":
        def ended_words(c: dict[str, np.ndarray], idx: np.ndarray) -> np.ndarray:
            ended, words = c["ended"][idx], c["words"][idx]
            count = ended.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(count > 0, (ended * words).sum(axis=1) / np.maximum(count, 1), np.nan)
        return ended_words
    column = {"effective_words": "effective_words", "ended_rate": "ended", "mean_words": "words",
              "repeated_10gram_rate": "repeated_10gram_rate"}
    if name not in column:
        raise KeyError(f"unknown length measure {name!r}; choose one of {', '.join(MEASURES)}")
    return mean_of(column[name])


def point_values(values: Sequence[Mapping[str, float]]) -> dict[str, float | None]:
    """Every measure of one point's answers (None where undefined: no answers, or none ended).

    >>> v = point_values([{"words": 100, "effective_words": 50, "ended": 0, "repeated_10gram_rate": 0.4},
    ...                   {"words": 300, "effective_words": 300, "ended": 1, "repeated_10gram_rate": 0.0}])
    >>> v["effective_words"], v["ended_words"], v["ended_rate"], v["repeated_10gram_rate"], v["mean_words"]
    (175.0, 300.0, 0.5, 0.2, 200.0)
    """
    if not values:
        return dict.fromkeys(MEASURES)
    cols, idx = _columns(values), np.arange(len(values))[None, :]
    out = {}
    for name in MEASURES:
        v = float(_measure(name)(cols, idx)[0])
        out[name] = None if math.isnan(v) else round(v, 4)
    return out


def _ratio(top: float, bottom: float) -> float | None:
    return top / bottom if bottom > 0 and not (math.isnan(top) or math.isnan(bottom)) else None


def paired_bootstrap(pairs: Sequence[tuple[Mapping[str, float], Mapping[str, float]]], measure: str = HEADLINE,
                     n_boot: int = N_BOOT, seed: int = BOOT_SEED, level: float = LEVEL) -> dict[str, Any]:
    """The point-over-base ratio of ``measure`` and its percentile bootstrap interval over resampled pairs.

    Returns ``base``, ``point``, ``ratio``, ``low``, ``high`` (None where undefined), ``n`` (pairs), ``level``
    and ``draws`` (resamples where the ratio was defined: a resample whose base has no ended answer has no
    ``ended_words`` ratio). Fixed ``seed``: the same pairs give the same interval.

    >>> same = [({"words": w, "effective_words": w, "ended": 1, "repeated_10gram_rate": 0},) * 2 for w in (1, 2, 3)]
    >>> r = paired_bootstrap(same)
    >>> r["ratio"], r["low"], r["high"]  # a model against itself: exactly 1, whatever the resample
    (1.0, 1.0, 1.0)
    """
    n = len(pairs)
    empty = {"base": None, "point": None, "ratio": None, "low": None, "high": None, "n": n, "level": level,
             "draws": 0}
    if n == 0:
        return empty
    base, point = _columns([b for b, _ in pairs]), _columns([p for _, p in pairs])
    fn = _measure(measure)
    whole = np.arange(n)[None, :]
    b0, p0 = float(fn(base, whole)[0]), float(fn(point, whole)[0])
    out = {**empty, "base": None if math.isnan(b0) else round(b0, 4),
           "point": None if math.isnan(p0) else round(p0, 4)}
    ratio = _ratio(p0, b0)
    if ratio is None:
        return out
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    with np.errstate(invalid="ignore", divide="ignore"):
        tops, bottoms = fn(point, idx), fn(base, idx)
        ratios = np.where(bottoms > 0, tops / bottoms, np.nan)
    ratios = ratios[~np.isnan(ratios)]
    alpha = (1 - level) / 2
    low, high = (np.quantile(ratios, [alpha, 1 - alpha]) if len(ratios) else (math.nan, math.nan))
    return {**out, "ratio": round(ratio, 4), "low": round(float(low), 4) if len(ratios) else None,
            "high": round(float(high), 4) if len(ratios) else None, "draws": int(len(ratios))}


def growth_intervals(base: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]],
                     measures: Sequence[str] = MEASURES, n_boot: int = N_BOOT, seed: int = BOOT_SEED
                     ) -> dict[str, dict[str, Any]]:
    """:func:`paired_bootstrap` of every measure, from the base model's and a point's scored rows."""
    pairs = pair_rows(base, rows)
    return {m: paired_bootstrap(pairs, m, n_boot=n_boot, seed=seed) for m in measures}


def excludes_one(interval: Mapping[str, Any]) -> bool | None:
    """Whether the interval leaves out a ratio of 1 (no change); None without an interval.

    >>> excludes_one({"low": 1.1, "high": 1.6}), excludes_one({"low": 0.8, "high": 1.2}), excludes_one({})
    (True, False, None)
    """
    low, high = interval.get("low"), interval.get("high")
    if not (is_number(low) and is_number(high)):
        return None
    return bool(low > 1 or high < 1)


def format_interval(interval: Mapping[str, Any] | None) -> str:
    """``1.32x [1.08, 1.61]``; "—" without a ratio.

    >>> format_interval({"ratio": 1.3215, "low": 1.08, "high": 1.613}), format_interval(None)
    ('1.32x [1.08, 1.61]', '—')
    """
    if not interval or not is_number(interval.get("ratio")):
        return "—"
    text = f"{interval['ratio']:.2f}x"
    if is_number(interval.get("low")) and is_number(interval.get("high")):
        text += f" [{interval['low']:.2f}, {interval['high']:.2f}]"
    return text
