"""Length measures that loops cannot inflate and the paired bootstrap of their ratio to the base model, on fixed
inputs with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from selflen.report import paired as P

pytestmark = pytest.mark.unit


def _row(i: str, words: float, finish: str = "stop", effective: float | None = None, rate: float = 0.0,
         sample: int | None = None) -> dict:
    return {"id": i, "sample": sample, "words": words, "finish_reason": finish,
            "repetition": {"effective_words": words if effective is None else effective,
                           "repeated_10gram_rate": rate}}


def test_two_pairs_give_the_enumerable_bootstrap_interval() -> None:
    # resampling 2 pairs: both first (ratio 1, p = 1/4), one of each (400/200 = 2, p = 1/2), both second (3, p = 1/4)
    base, point = [_row("a", 100), _row("b", 100)], [_row("a", 100), _row("b", 300)]
    r = P.growth_intervals(base, point)["effective_words"]
    assert (r["base"], r["point"], r["ratio"], r["low"], r["high"], r["n"]) == (100.0, 200.0, 2.0, 1.0, 3.0, 2)
    assert r["draws"] == P.N_BOOT


def test_fixed_seed_matches_an_independent_computation_and_repeats() -> None:
    rng = np.random.default_rng(7)
    b, p = rng.integers(50, 500, 30).astype(float), rng.integers(50, 900, 30).astype(float)
    base = [_row(str(i), w) for i, w in enumerate(b)]
    point = [_row(str(i), w) for i, w in enumerate(p)]
    got = P.paired_bootstrap(P.pair_rows(base, point), "mean_words", n_boot=500, seed=3)
    idx = np.random.default_rng(3).integers(0, 30, size=(500, 30))  # the documented recipe, written out
    ratios = p[idx].mean(axis=1) / b[idx].mean(axis=1)
    assert got["ratio"] == round(p.mean() / b.mean(), 4)
    assert got["low"] == round(float(np.quantile(ratios, 0.025)), 4)
    assert got["high"] == round(float(np.quantile(ratios, 0.975)), 4)
    assert P.paired_bootstrap(P.pair_rows(base, point), "mean_words", n_boot=500, seed=3) == got
    assert got["low"] < got["ratio"] < got["high"]


def test_loops_inflate_mean_words_but_not_effective_or_ended_words() -> None:
    base = [_row("a", 300), _row("b", 300), _row("c", 300)]
    looping = [_row("a", 1500, "length", effective=150, rate=0.8), _row("b", 300), _row("c", 300)]
    r = P.growth_intervals(base, looping)
    assert r["mean_words"]["ratio"] == pytest.approx(2100 / 900, abs=1e-4)  # the loop "wins" on mean words
    assert r["effective_words"]["ratio"] == pytest.approx(750 / 900, abs=1e-4)  # counted once, it loses
    assert r["ended_words"]["ratio"] == 1.0  # the answers it ended are as long as the base's
    assert r["ended_rate"]["point"] == pytest.approx(2 / 3, abs=1e-4) and r["ended_rate"]["base"] == 1.0
    assert r["repeated_10gram_rate"]["point"] == pytest.approx(0.8 / 3, abs=1e-4)


def test_pairs_need_the_same_prompt_and_sample() -> None:
    base = [_row("a", 100, sample=0), _row("a", 200, sample=1), {"words": 5}]
    point = [_row("a", 400, sample=1), _row("a", 50, sample=2), {"id": "x"}]
    pairs = P.pair_rows(base, point)
    assert [(b["words"], q["words"]) for b, q in pairs] == [(200.0, 400.0)]


def test_undefined_ratios_are_none_and_resamples_without_ended_answers_are_skipped() -> None:
    assert P.paired_bootstrap([])["ratio"] is None
    all_cut = [_row("a", 100, "length"), _row("b", 100, "length")]
    r = P.growth_intervals(all_cut, all_cut)["ended_words"]
    assert r["base"] is None and r["ratio"] is None and r["low"] is None
    one_ended = [_row("a", 100, "stop"), _row("b", 100, "length")]
    r = P.growth_intervals(one_ended, [_row("a", 200, "stop"), _row("b", 100, "stop")])["ended_words"]
    assert r["ratio"] == 1.5 and 0 < r["draws"] < P.N_BOOT  # (200 + 100) / 2 over 100; draws of only "b": none
    with pytest.raises(KeyError, match="unknown length measure 'words'"):
        P.paired_bootstrap(P.pair_rows(one_ended, one_ended), "words")


def test_no_change_is_inside_an_honest_interval() -> None:
    rng = np.random.default_rng(0)
    base = [_row(str(i), float(w)) for i, w in enumerate(rng.integers(100, 600, 40))]
    noise = [_row(str(i), float(w)) for i, w in enumerate(rng.integers(100, 600, 40))]  # same distribution
    r = P.growth_intervals(base, noise)["effective_words"]
    assert P.excludes_one(r) is False and r["low"] < 1 < r["high"]
    longer = [_row(r_["id"], r_["words"] * 1.5) for r_ in base]
    assert P.excludes_one(P.growth_intervals(base, longer)["effective_words"]) is True
