"""Word counters. The benchmarks disagree on what a "word" is (by up to 13 % on Chinese), so every score records
which counter produced it, and each benchmark is scored with its own reference counter by default.

=================  ==========================================================================================
name               rule
=================  ==========================================================================================
``longen``         Self-Lengthen / LonGen ``W``: every char of ``scripts.LONGEN_W`` (CJK Unified Ideographs, CJK
                   Symbols and Punctuation, Halfwidth and Fullwidth Forms) counts as one word; those chars are
                   then replaced by spaces and the whitespace-separated tokens of the rest are added.
``longbench_write`` LongWriter: chars of ``scripts.REFERENCE_IDEOGRAPHS`` (the CJK Unified Ideographs block)
                   plus matches of ``\\b[a-zA-Z]+\\b`` (Python's Unicode
                   ``\\b``). Digits, kana, Hangul, Cyrillic and accented Latin letters count zero; "don't" is
                   two words; an ASCII word glued to a CJK char, a digit or ``_`` does not match at all.
``lifebench``      LIFEBench-style: chars of ``scripts.REFERENCE_IDEOGRAPHS`` plus matches of ``[a-zA-Z0-9'-]+``
                   ("don't", "state-of-the-art" and "2024" are one word each; "3.14" is two).
``unicode``        selflen's default (``selflen.text.count_words_unicode``): script-aware, digits count;
                   see that function's docstring for the exact rule.
=================  ==========================================================================================

The character classes come from :mod:`selflen.text.scripts`; only the formulas are defined here.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable

from selflen.text import count_words_longen, count_words_unicode
from selflen.text.scripts import REFERENCE_IDEOGRAPHS, char_class

__all__ = [
    "COUNTERS",
    "DEFAULT_COUNTER",
    "count_words",
    "count_words_lifebench",
    "count_words_longbench_write",
    "count_words_longen",
    "count_words_unicode",
    "get_counter",
]

_CJK = re.compile(char_class(REFERENCE_IDEOGRAPHS))
_LBW_LATIN = re.compile(r"\b[a-zA-Z]+\b")
_LIFEBENCH_TOKEN = re.compile(r"[a-zA-Z0-9'-]+")


def count_words_longbench_write(text: str) -> int:
    """LongWriter's counter: CJK Unified Ideographs (``REFERENCE_IDEOGRAPHS``) plus ``\\b[a-zA-Z]+\\b`` matches.

    Reproduces the reference exactly, quirks included: Python's ``\\b`` is Unicode-aware, so Latin letters
    touching a CJK char, a digit or an underscore are not a match.

    >>> count_words_longbench_write("I don't have 3 apples.")
    5
    >>> count_words_longbench_write("写一篇文章，")  # the full-width comma counts zero
    5
    >>> count_words_longbench_write("中文abc")  # no word boundary between 文 and a
    2
    >>> count_words_longbench_write("ひらがな 한국어 Привет café 42")
    0
    """
    return len(_CJK.findall(text)) + len(_LBW_LATIN.findall(text))


def count_words_lifebench(text: str) -> int:
    """LIFEBench-style counter: CJK Unified Ideographs (``REFERENCE_IDEOGRAPHS``) plus ``[a-zA-Z0-9'-]+`` matches.

    >>> count_words_lifebench("I don't have 3 apples.")
    5
    >>> count_words_lifebench("state-of-the-art, 3.14")
    3
    >>> count_words_lifebench("中文abc，")
    3
    """
    return len(_CJK.findall(text)) + len(_LIFEBENCH_TOKEN.findall(text))


COUNTERS: dict[str, Callable[[str], int]] = {
    "longen": count_words_longen,
    "longbench_write": count_words_longbench_write,
    "lifebench": count_words_lifebench,
    "unicode": count_words_unicode,
}
"""Counter registry: name -> ``fn(text) -> int``."""

DEFAULT_COUNTER = "unicode"


def get_counter(name: str) -> Callable[[str], int]:
    """Look a counter up by name; an unknown name raises ``KeyError`` listing the choices.

    >>> get_counter("longen")("你好， world")
    4
    """
    try:
        return COUNTERS[name]
    except KeyError:
        close = difflib.get_close_matches(name, COUNTERS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"Unknown word counter {name!r}.{hint} Available: {', '.join(sorted(COUNTERS))}.") from None


def count_words(text: str, counter: str = DEFAULT_COUNTER) -> int:
    """Count words in ``text`` with the named counter.

    >>> count_words("don't stop", "longbench_write"), count_words("don't stop", "lifebench")
    (3, 2)
    """
    return get_counter(counter)(text)
