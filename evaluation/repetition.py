"""Repetition and honesty metrics: none of the anchor benchmarks reports these, yet a model that pads its answer
with repeated text games every length score. All are pure functions of the text (or of a list of lengths).

Tokens for n-grams: each character of ``selflen.text.scripts.SINGLE_CHAR_TOKENS`` (CJK ideographs, kana, Hangul
syllables) is one token; any other run of letters/digits is one token (lower-cased); punctuation is dropped.
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from selflen.text import dedup_mask
from selflen.text.scripts import SINGLE_CHAR_TOKENS

__all__ = [
    "compression_ratio",
    "distinct_n",
    "early_stop_rate",
    "effective_length",
    "finish_length_rate",
    "length_spread",
    "ngrams",
    "positional_distinct",
    "repeated_ngram_rate",
    "repetition_metrics",
    "split_units",
    "tokens",
]

_SINGLE = SINGLE_CHAR_TOKENS
_TOKEN = re.compile(rf"[{_SINGLE}]|[^\W_{_SINGLE}]+")
_PARAGRAPH = re.compile(r"\n\s*\n|\n")
_SENTENCE = re.compile(r"(?<=[.!?;。！？；…])\s*")


def tokens(text: str) -> list[str]:
    """Split text into n-gram tokens (see module docstring).

    >>> tokens("Hello, World! 你好 3.5")
    ['hello', 'world', '你', '好', '3', '5']
    """
    return [t.lower() for t in _TOKEN.findall(text)]


def ngrams(toks: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """All contiguous n-grams of a token list.

    >>> ngrams(["a", "b", "c"], 2)
    [('a', 'b'), ('b', 'c')]
    """
    return [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]


def distinct_n(text: str, n: int = 2) -> float:
    """Share of distinct n-grams among all n-grams (1.0 = no repetition; 1.0 also when there are none).

    >>> distinct_n("a b a b", 2)
    0.6666666666666666
    >>> distinct_n("", 2)
    1.0
    """
    grams = ngrams(tokens(text), n)
    return len(set(grams)) / len(grams) if grams else 1.0


def repeated_ngram_rate(text: str, n: int = 4) -> float:
    """Share of n-gram positions whose n-gram occurs more than once in the text (0.0 = nothing repeats).

    Unlike ``1 − distinct_n`` this counts the first occurrence of a repeated n-gram too.

    >>> repeated_ngram_rate("x y z w x y z w", 4)  # (x y z w) twice among 5 four-grams
    0.4
    >>> repeated_ngram_rate("one two three four five", 4)
    0.0
    """
    grams = ngrams(tokens(text), n)
    if not grams:
        return 0.0
    counts = Counter(grams)
    return sum(1 for g in grams if counts[g] > 1) / len(grams)


def compression_ratio(text: str) -> float:
    """UTF-8 size over zlib-compressed size (level 9); higher means more redundant. 0.0 for empty text.

    >>> compression_ratio("")
    0.0
    >>> compression_ratio("la " * 500) > 20 > compression_ratio("The quick brown fox jumps over the lazy dog.")
    True
    """
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw, 9)) if raw else 0.0


def split_units(text: str, unit: str = "sentence") -> list[str]:
    """Split text into paragraphs (non-empty lines) or sentences (after . ! ? ; and their CJK forms).

    >>> split_units("One. Two!\\n\\n三。四？")
    ['One.', 'Two!', '三。', '四？']
    >>> split_units("One. Two!\\n\\n三。四？", "paragraph")
    ['One. Two!', '三。四？']
    """
    if unit not in ("sentence", "paragraph"):
        raise ValueError(f"unit must be 'sentence' or 'paragraph', got {unit!r}")
    paragraphs = [p.strip() for p in _PARAGRAPH.split(text) if p.strip()]
    if unit == "paragraph":
        return paragraphs
    return [s.strip() for p in paragraphs for s in _SENTENCE.split(p) if s.strip()]


def effective_length(text: str, counter: Callable[[str], int], threshold: float = 0.8, unit: str = "sentence") -> int:
    """Words left after dropping near-duplicate units (sentences by default), counted with ``counter``.

    Duplicates are found by ``selflen.text.dedup_mask`` (exact match after normalising, or 5-token-shingle
    Jaccard ≥ ``threshold`` with an earlier kept unit), so padding by repetition does not count towards length.

    >>> effective_length("I agree. I agree. I agree. Fine.", lambda t: len(t.split()))
    3
    """
    units = split_units(text, unit)
    if not units:
        return 0
    keep = dedup_mask(units, threshold=threshold)
    return counter("\n".join(u for u, kept in zip(units, keep, strict=True) if kept))


def positional_distinct(text: str, window: int = 200, n: int = 4) -> list[float]:
    """distinct-n of consecutive ``window``-token slices, to see where along an answer repetition begins.

    >>> positional_distinct("a b c d " * 3 + "e f g h i j k l", window=8, n=2)
    [0.5714285714285714, 1.0, 1.0]
    """
    toks = tokens(text)
    out = []
    for start in range(0, len(toks), window):
        grams = ngrams(toks[start : start + window], n)
        out.append(len(set(grams)) / len(grams) if grams else 1.0)
    return out


def repetition_metrics(text: str, counter: Callable[[str], int], words: int | None = None) -> dict[str, float]:
    """Per-answer repetition metrics: distinct-2/4, repeated-4-gram rate, compression ratio, effective length.

    ``effective_ratio`` is effective words over all words (1.0 for an empty answer).

    >>> m = repetition_metrics("Same line here. Same line here.", lambda t: len(t.split()))
    >>> m["effective_words"], m["effective_ratio"], m["distinct_2"]
    (3, 0.5, 0.6)
    """
    total = counter(text) if words is None else words
    effective = effective_length(text, counter)
    return {
        "distinct_2": distinct_n(text, 2),
        "distinct_4": distinct_n(text, 4),
        "repeated_4gram_rate": repeated_ngram_rate(text, 4),
        "compression_ratio": compression_ratio(text),
        "effective_words": effective,
        "effective_ratio": effective / total if total else 1.0,
    }


def finish_length_rate(finish_reasons: Iterable[str | None]) -> float:
    """Share of generations cut by the token limit (``finish_reason == "length"``); 0.0 when there are none.

    >>> finish_length_rate(["stop", "length", "stop", "length"])
    0.5
    """
    reasons = list(finish_reasons)
    return sum(1 for r in reasons if r == "length") / len(reasons) if reasons else 0.0


def early_stop_rate(finish_reasons: Sequence[str | None], undershoot: Sequence[bool]) -> float:
    """Share of answers that ended on their own (``stop``) while still shorter than their target window.

    >>> early_stop_rate(["stop", "stop", "length"], [True, False, True])
    0.3333333333333333
    """
    if not finish_reasons:
        return 0.0
    pairs = zip(finish_reasons, undershoot, strict=True)
    return sum(1 for r, short in pairs if r == "stop" and short) / len(finish_reasons)


def length_spread(lengths: Sequence[float]) -> dict[str, float]:
    """Mean, population standard deviation and coefficient of variation σ/μ of several samples' lengths.

    >>> length_spread([90, 110])
    {'mean': 100.0, 'std': 10.0, 'cv': 0.1}
    >>> length_spread([0, 0])
    {'mean': 0.0, 'std': 0.0, 'cv': 0.0}
    """
    if not lengths:
        raise ValueError("length_spread needs at least one length")
    mean = sum(lengths) / len(lengths)
    std = math.sqrt(sum((x - mean) ** 2 for x in lengths) / len(lengths))
    return {"mean": mean, "std": std, "cv": std / mean if mean else 0.0}
