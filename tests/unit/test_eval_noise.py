"""bench/eval_noise.py: the ratio spread over pairs of draws (the script itself needs a finished run)."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def noise():
    spec = importlib.util.spec_from_file_location("eval_noise", ROOT / "bench" / "eval_noise.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rows(*words, cut=()):
    rep = {"effective_words": 0, "repeated_10gram_rate": 0.0}
    return [{"id": f"p{i}", "sample": 0, "words": w, "finish_reason": "length" if i in cut else "stop",
             "repetition": rep} for i, w in enumerate(words)]


def test_base_pairs_two_draws_both_ways_and_iterations_pair_every_draw(noise):
    draws = {
        "0": {1: rows(100, 200), 2: rows(200, 400, cut={1})},
        "2": {1: rows(300, 300), 2: rows(100, 100)},
    }
    base = noise.ratios(draws, "0")
    assert base["mean_words"]["n"] == 2  # draws 1 and 2 both ways, never a draw with itself
    assert (base["mean_words"]["min"], base["mean_words"]["max"]) == (0.5, 2.0)
    assert base["ended_mean_words"]["max"] == pytest.approx(200 / 150, abs=1e-3)  # the cut answer left out
    it = noise.ratios(draws, "2")
    assert it["mean_words"]["n"] == 4
    assert it["mean_words"]["min"] == pytest.approx(100 / 300, abs=1e-3)
    assert it["mean_words"]["max"] == pytest.approx(300 / 150, abs=1e-3)
    assert it["paired_growth"]["max"] == pytest.approx((3 * 1.5) ** 0.5, abs=1e-3)  # per prompt 3x and 1.5x


def test_spread_of_nothing_is_missing(noise):
    assert noise.spread([]) is None
