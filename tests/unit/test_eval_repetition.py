"""Repetition and honesty metrics."""

from __future__ import annotations

import pytest

from evaluation import repetition as r
from evaluation.counters import count_words_longen

pytestmark = pytest.mark.unit


def test_tokens_split_cjk_and_kana_per_char() -> None:
    assert r.tokens("Hi 你好 カナ 42") == ["hi", "你", "好", "カ", "ナ", "42"]


def test_distinct_and_repeated_ngrams() -> None:
    assert r.distinct_n("a b c d", 2) == 1.0
    assert r.distinct_n("a a a a", 1) == 0.25
    assert r.repeated_ngram_rate("a b c a b c", 3) == pytest.approx(2 / 4)
    assert r.repeated_ngram_rate("short", 4) == 0.0


def test_compression_ratio_orders_redundancy() -> None:
    varied = "The committee met on Tuesday to review budgets, staffing and the new library hours."
    assert r.compression_ratio(varied * 20) > 5 * r.compression_ratio(varied)


def test_effective_length_drops_padding() -> None:
    body = "The river rose overnight. Farmers moved their cattle to higher ground. Schools closed early."
    padded = body + " " + " ".join(["The river rose overnight."] * 5) + "\n\n" + body
    assert count_words_longen(padded) > 2 * count_words_longen(body)
    assert r.effective_length(padded, count_words_longen) == count_words_longen(body)
    assert r.effective_length("", count_words_longen) == 0


def test_effective_length_chinese_sentences() -> None:
    text = "今天天气很好。今天天气很好。我们去公园。"
    assert r.effective_length(text, count_words_longen) == count_words_longen("今天天气很好。我们去公园。")


def test_split_units() -> None:
    assert r.split_units("A. B?\nC", "sentence") == ["A.", "B?", "C"]
    with pytest.raises(ValueError):
        r.split_units("x", "chapter")


def test_finish_and_early_stop_rates() -> None:
    assert r.finish_length_rate([]) == 0.0
    assert r.finish_length_rate(["length", "stop", "error", "length"]) == 0.5
    assert r.early_stop_rate(["stop", "length", "stop"], [True, True, False]) == pytest.approx(1 / 3)


def test_length_spread() -> None:
    assert r.length_spread([100, 100, 100]) == {"mean": 100.0, "std": 0.0, "cv": 0.0}
    spread = r.length_spread([50, 150])
    assert spread["std"] == 50.0 and spread["cv"] == 0.5
    with pytest.raises(ValueError):
        r.length_spread([])


def test_positional_distinct_finds_where_repetition_starts() -> None:
    fresh = " ".join(f"w{i}" for i in range(100))
    looped = " ".join(["x y"] * 50)
    windows = r.positional_distinct(fresh + " " + looped, window=100, n=2)
    assert windows[0] == 1.0 and windows[1] < 0.05


def test_repetition_metrics_keys() -> None:
    m = r.repetition_metrics("One two three. One two three.", count_words_longen)
    assert set(m) == {"distinct_2", "distinct_4", "repeated_4gram_rate", "compression_ratio", "effective_words",
                      "effective_ratio"}  # fmt: skip
    assert m["effective_ratio"] == 0.5
