"""Hand-computed cases for the length scorers (window borders, zero length, ranges, compat modes)."""

from __future__ import annotations

import math

import pytest

from evaluation import scorers as s

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("type_", "constraint", "window"),
    [
        ("about", "around 5000 words", (4000.0, 6000.0)),
        ("about", "大约2500字", (2000.0, 3000.0)),
        ("range", "2000字至3000字", (2000.0, 3000.0)),
        ("range", "6000-8000 words", (6000.0, 8000.0)),
        ("above", "more than 4000 words", (4000.0, 6000.0)),
        ("above", "大于7000字", (7000.0, 10500.0)),
        ("below", "less than 2000 words", (1000.0, 2000.0)),
        ("below", "小于8000字", (4000.0, 8000.0)),
    ],
)
def test_longen_window(type_: str, constraint: str, window: tuple[float, float]) -> None:
    assert s.longen_window(type_, constraint) == window


@pytest.mark.parametrize(
    ("type_", "constraint"), [("about", "around two thousand words"), ("range", "5000 words"), ("sideways", "5000")]
)
def test_longen_window_rejects_unparsable(type_: str, constraint: str) -> None:
    with pytest.raises(ValueError):
        s.longen_window(type_, constraint)


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (0, 0.0),
        (1000, 0.0),  # L = a/2
        (999, 0.0),
        (1500, 0.5),
        (1999, 2 * 1999 / 2000 - 1),
        (2000, 1.0),  # L = a
        (2500, 1.0),
        (3000, 1.0),  # L = b
        (3001, 3 - 2 * 3001 / 3000),
        (3750, 0.5),
        (4500, 0.0),  # L = 1.5 b
        (9999, 0.0),
    ],
)
def test_longen_score_borders(words: int, expected: float) -> None:
    assert s.longen_score(words, 2000.0, 3000.0) == pytest.approx(expected, abs=1e-12)


def test_longen_score_doc_example() -> None:
    got = [s.longen_score(L, 4000, 6000) for L in (3000, 7000, 8000, 9000)]
    assert got == pytest.approx([0.5, 2 / 3, 1 / 3, 0.0])


@pytest.mark.parametrize(
    ("required", "produced", "expected"),
    [
        (1000, 1000, 100.0),
        (1000, 0, 0.0),
        (1000, 2000, 100 * (1 - 1 / 3)),
        (1000, 4000, 0.0),
        (1000, 5000, 0.0),
        (1000, 500, 50.0),
        (1000, 250, 0.0),
        (300, 200, 100 * (1 - 0.5 / 2)),
    ],
)
def test_lbw_length_score(required: float, produced: float, expected: float) -> None:
    assert s.lbw_length_score(required, produced) == pytest.approx(expected)


def test_lbw_rejects_nonpositive_requirement() -> None:
    with pytest.raises(ValueError):
        s.lbw_length_score(0, 10)


def test_quality_aggregations() -> None:
    longen = dict(zip(s.LONGEN_DIMENSIONS, [1, 2, 3, 4, 5, 6, 7], strict=True))
    assert s.longen_quality_score(longen) == 4.0
    lbw = dict(zip(s.LBW_DIMENSIONS, [1, 2, 3, 4, 5, 5], strict=True))
    assert s.lbw_quality_score(lbw) == pytest.approx((0 + 25 + 50 + 75 + 100 + 100) / 6)
    assert s.overall_lbw_score(100.0, 50.0) == 75.0


@pytest.mark.parametrize(
    ("mode", "produced", "expected"),
    [
        ("equal", 1000, 100.0),
        ("equal", 800, 100 * math.exp(5 * -0.2)),
        ("equal", 1500, 100 * math.exp(-2 * 0.5)),
        ("equal", 0, 100 * math.exp(-5)),
        ("at_most", 400, 100.0),
        ("at_most", 1000, 100.0),
        ("at_most", 1200, 100 * math.exp(-0.4)),
        ("at_least", 3000, 100.0),
        ("at_least", 1000, 100.0),
        ("at_least", 900, 100 * math.exp(-0.5)),
    ],
)
def test_lifebench_length_score(mode: str, produced: float, expected: float) -> None:
    assert s.lifebench_length_score(1000, produced, mode) == pytest.approx(expected)


def test_lifebench_percent_compat_reproduces_the_unit_bug() -> None:
    # the public code: deviation in percent, then exp(5*LD%) / exp(-2*LD%)
    assert s.lifebench_length_score(1000, 1010, percent_units=True) == pytest.approx(100 * math.exp(-2 * 1.0))
    assert s.lifebench_length_score(1000, 900, percent_units=True) == pytest.approx(100 * math.exp(-50))
    assert s.length_deviation(1000, 1100) == pytest.approx(0.1)
    assert s.length_deviation(1000, 1100, percent_units=True) == pytest.approx(10.0)


def test_lifebench_unknown_mode() -> None:
    with pytest.raises(ValueError, match="equal"):
        s.lifebench_length_score(1000, 10, "exactly")


def test_windows_and_positions() -> None:
    assert s.lifebench_window(1000, "equal", 0.2) == pytest.approx((800.0, 1200.0))
    assert s.lifebench_spec_from_longen("about", "around 2000 words") == (2000.0, "equal", (1600.0, 2400.0))
    assert s.lifebench_spec_from_longen("below", "less than 2000 words") == (2000.0, "at_most", (0.0, 2000.0))
    assert [s.window_position(x, 10, 20) for x in (9, 10, 20, 21)] == ["under", "hit", "hit", "over"]
    assert s.longen_target("range", "2000-4000 words") == 3000.0
