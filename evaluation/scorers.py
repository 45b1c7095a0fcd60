"""Length-following scorers: small pure functions, each reproducing one reference formula.

* LonGen (Self-Lengthen): a target window ``[a, b]`` per constraint type and a piecewise score in ``[0, 1]``.
* LongBench-Write (LongWriter): the length score ``S_l`` in ``[0, 100]`` and the quality score ``S_q``.
* LIFEBench-style: length deviation ``LD`` (a fraction) and the asymmetric exponential length score ``LS``.
* Window bookkeeping shared by all: hit / over / under a target interval.

Compatibility notes (where a reference is quirky):

* LonGen reads numbers with ``\\d+`` (a range takes the first two numbers), so ``"2,000 words"`` parses as 2.
  We keep that for comparability.
* LongWriter divides by the produced length; an empty answer raises there. We return 0 instead.
* LIFEBench's public code computes ``LD`` in *percent* and feeds that into ``exp(5·LD)`` / ``exp(−2·LD)``, which
  makes any deviation beyond ~2 % score ≈0. The published formula is in fractions, and that is our default;
  ``percent_units=True`` reproduces the public code's numbers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Literal

__all__ = [
    "LBW_DIMENSIONS",
    "LIFEBENCH_MODES",
    "LONGEN_DIMENSIONS",
    "LONGEN_TYPES",
    "Position",
    "constraint_numbers",
    "lbw_length_score",
    "lbw_quality_score",
    "length_deviation",
    "lifebench_length_score",
    "lifebench_spec_from_longen",
    "lifebench_window",
    "longen_quality_score",
    "longen_score",
    "longen_target",
    "longen_window",
    "overall_lbw_score",
    "window_position",
]

LONGEN_TYPES = ("about", "range", "above", "below")
LIFEBENCH_MODES = ("equal", "at_most", "at_least")
LONGEN_DIMENSIONS = ("Relevance", "Coherence", "Accuracy", "Consistency", "Clarity", "Creativity", "Engagement")
LBW_DIMENSIONS = ("Relevance", "Accuracy", "Coherence", "Clarity", "Breadth and Depth", "Reading Experience")

Position = Literal["under", "hit", "over"]
_NUMBER = re.compile(r"\d+")
_RANGE = re.compile(r"(\d+)\D+(\d+)")


def constraint_numbers(constraint: str) -> list[int]:
    """All runs of ASCII/Unicode digits in a constraint, as ints (the reference's ``\\d+``).

    >>> constraint_numbers("2000字至3000字")
    [2000, 3000]
    >>> constraint_numbers("around 2,000 words")  # the reference's quirk, kept
    [2, 0]
    """
    return [int(m) for m in _NUMBER.findall(constraint)]


def longen_window(type_: str, constraint: str) -> tuple[float, float]:
    """The LonGen target window ``(a, b)`` in words for a constraint of the given type.

    about N → [0.8N, 1.2N]; range N1–N2 → [N1, N2]; above N → [N, 1.5N]; below N → [0.5N, N].
    Raises ``ValueError`` for an unknown type or a constraint without the numbers it needs.

    >>> longen_window("about", "around 5000 words")
    (4000.0, 6000.0)
    >>> longen_window("range", "6000-8000 words")
    (6000.0, 8000.0)
    >>> longen_window("above", "大于2000字"), longen_window("below", "小于3000字")
    ((2000.0, 3000.0), (1500.0, 3000.0))
    """
    if type_ == "range":
        match = _RANGE.search(constraint)
        if match is None:
            raise ValueError(f"range constraint needs two numbers, got {constraint!r}")
        return float(match.group(1)), float(match.group(2))
    match = _NUMBER.search(constraint)
    if match is None:
        raise ValueError(f"{type_} constraint has no number: {constraint!r}")
    n = int(match.group(0))
    factors = {"about": (0.8, 1.2), "above": (1.0, 1.5), "below": (0.5, 1.0)}
    if type_ not in factors:
        raise ValueError(f"unknown LonGen type {type_!r}; expected one of {', '.join(LONGEN_TYPES)}")
    lo, hi = factors[type_]
    return lo * n, hi * n


def longen_score(words: float, a: float, b: float) -> float:
    """LonGen length-following score of a ``words``-long answer for window ``[a, b]``, in ``[0, 1]``.

    1 inside the window; ``max(0, 2L/a − 1)`` below it (0 at L ≤ a/2); ``max(0, 3 − 2L/b)`` above it
    (0 at L ≥ 1.5b).

    >>> [round(longen_score(L, 4000, 6000), 3) for L in (0, 2000, 3000, 4000, 6000, 7000, 8000, 9000)]
    [0.0, 0.0, 0.5, 1.0, 1.0, 0.667, 0.333, 0.0]
    """
    if a <= words <= b:
        return 1.0
    if words < a:
        return max(0.0, 2.0 * words / a - 1.0)
    return max(0.0, 3.0 - 2.0 * words / b)


def longen_target(type_: str, constraint: str) -> float:
    """A single "required length" for a LonGen item: the midpoint of its window (used for plots and LD).

    >>> longen_target("below", "less than 4000 words")
    3000.0
    """
    a, b = longen_window(type_, constraint)
    return (a + b) / 2.0


def lbw_length_score(required: float, produced: float) -> float:
    """LongBench-Write length score ``S_l`` in ``[0, 100]``.

    ``100·max(0, 1 − (l'/l − 1)/3)`` when the answer is longer than required, else
    ``100·max(0, 1 − (l/l' − 1)/2)``; an empty answer scores 0 (the reference would divide by zero).

    >>> lbw_length_score(1000, 1000), lbw_length_score(1000, 2000), lbw_length_score(1000, 500)
    (100.0, 66.66666666666667, 50.0)
    >>> lbw_length_score(1000, 4000), lbw_length_score(1000, 0)
    (0.0, 0.0)
    """
    if required <= 0:
        raise ValueError(f"required length must be positive, got {required}")
    if produced <= 0:
        return 0.0
    if produced > required:
        return 100.0 * max(0.0, 1.0 - (produced / required - 1.0) / 3.0)
    return 100.0 * max(0.0, 1.0 - (required / produced - 1.0) / 2.0)


def longen_quality_score(scores: Mapping[str, float]) -> float:
    """LonGen quality: the plain mean of the seven 1–10 judge dimensions.

    The reference publishes no aggregation; the mean of the seven is our documented choice.

    >>> longen_quality_score(dict.fromkeys(LONGEN_DIMENSIONS, 7))
    7.0
    """
    return sum(float(scores[d]) for d in LONGEN_DIMENSIONS) / len(LONGEN_DIMENSIONS)


def lbw_quality_score(scores: Mapping[str, float]) -> float:
    """LongBench-Write quality ``S_q`` in ``[0, 100]``: mean over the six dimensions of ``25·(score − 1)``.

    >>> lbw_quality_score(dict.fromkeys(LBW_DIMENSIONS, 5)), lbw_quality_score(dict.fromkeys(LBW_DIMENSIONS, 3))
    (100.0, 50.0)
    """
    return sum(25.0 * (float(scores[d]) - 1.0) for d in LBW_DIMENSIONS) / len(LBW_DIMENSIONS)


def overall_lbw_score(length_score: float, quality_score: float) -> float:
    """LongBench-Write overall ``S = (S_l + S_q) / 2``.

    >>> overall_lbw_score(80.0, 60.0)
    70.0
    """
    return (length_score + quality_score) / 2.0


def length_deviation(required: float, produced: float, percent_units: bool = False) -> float:
    """Length deviation ``LD = (l' − l) / l`` as a fraction (``percent_units`` gives LIFEBench's percent).

    >>> length_deviation(1000, 1200), length_deviation(1000, 500), length_deviation(1000, 1200, percent_units=True)
    (0.2, -0.5, 20.0)
    """
    if required <= 0:
        raise ValueError(f"required length must be positive, got {required}")
    ld = (produced - required) / required
    return ld * 100.0 if percent_units else ld


def lifebench_length_score(
    required: float, produced: float, mode: str = "equal", percent_units: bool = False
) -> float:
    """LIFEBench-style length score ``LS`` in ``[0, 100]`` for ``mode`` in ``equal|at_most|at_least``.

    equal: ``100·e^{5·LD}`` if LD < 0 else ``100·e^{−2·LD}``; at_most: 100 when LD ≤ 0, else the "over"
    branch; at_least: 100 when LD ≥ 0, else the "under" branch. ``LD`` is a fraction by default;
    ``percent_units=True`` reproduces the public code's unit bug (LD in percent inside the exponentials).

    >>> round(lifebench_length_score(1000, 900), 2), round(lifebench_length_score(1000, 1100), 2)
    (60.65, 81.87)
    >>> lifebench_length_score(1000, 500, "at_most"), lifebench_length_score(1000, 1500, "at_least")
    (100.0, 100.0)
    >>> round(lifebench_length_score(1000, 990, percent_units=True), 3)
    0.674
    """
    if mode not in LIFEBENCH_MODES:
        raise ValueError(f"unknown LIFEBench mode {mode!r}; expected one of {', '.join(LIFEBENCH_MODES)}")
    ld = length_deviation(required, produced, percent_units)
    if (mode == "at_most" and ld <= 0) or (mode == "at_least" and ld >= 0):
        return 100.0
    return 100.0 * (math.exp(5.0 * ld) if ld < 0 else math.exp(-2.0 * ld))


def lifebench_window(required: float, mode: str = "equal", tolerance: float = 0.1) -> tuple[float, float]:
    """The interval counted as a "hit": ±``tolerance`` around ``required`` for equal, else a half-line.

    The tolerance (default 10 %) is selflen's choice; LIFEBench itself reports only LD and LS.

    >>> lifebench_window(1000), lifebench_window(1000, "at_most"), lifebench_window(1000, "at_least")
    ((900.0, 1100.0), (0.0, 1000.0), (1000.0, inf))
    """
    if mode == "equal":
        return required * (1.0 - tolerance), required * (1.0 + tolerance)
    if mode == "at_most":
        return 0.0, float(required)
    if mode == "at_least":
        return float(required), math.inf
    raise ValueError(f"unknown LIFEBench mode {mode!r}; expected one of {', '.join(LIFEBENCH_MODES)}")


def lifebench_spec_from_longen(type_: str, constraint: str) -> tuple[float, str, tuple[float, float]]:
    """Map a LonGen constraint to ``(required, mode, hit_window)`` for LIFEBench-style scoring.

    about N → equal N (window ±20 %, as LonGen's); below N → at_most N; above N → at_least N;
    range N1–N2 → equal to the midpoint, hit window [N1, N2].

    >>> lifebench_spec_from_longen("range", "2000-4000 words")
    (3000.0, 'equal', (2000.0, 4000.0))
    >>> lifebench_spec_from_longen("above", "more than 2000 words")
    (2000.0, 'at_least', (2000.0, inf))
    """
    a, b = longen_window(type_, constraint)
    if type_ == "below":
        return b, "at_most", (0.0, b)
    if type_ == "above":
        return a, "at_least", (a, math.inf)
    return (a + b) / 2.0, "equal", (a, b)


def window_position(words: float, a: float, b: float) -> Position:
    """Where a length falls relative to ``[a, b]``: ``under``, ``hit`` or ``over``.

    >>> window_position(10, 20, 30), window_position(20, 20, 30), window_position(31, 20, 30)
    ('under', 'hit', 'over')
    """
    if words < a:
        return "under"
    if words > b:
        return "over"
    return "hit"
