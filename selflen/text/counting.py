"""Word counters: LonGen's reference ``W`` and the script-aware ``unicode`` counter."""

from __future__ import annotations

import functools
import re
import unicodedata

from selflen.text.scripts import CJK_WORD_CHARS, LONGEN_W, char_class

__all__ = ["COUNTERS", "LONGEN_UNIT_RE", "count_words", "count_words_longen", "count_words_unicode"]

COUNTERS: tuple[str, ...] = ("longen", "unicode")
"""Names accepted by :func:`count_words` (and by the config's ``language.counter``)."""

_LONGEN_W_RE = re.compile(char_class(LONGEN_W))
LONGEN_UNIT_RE = re.compile(char_class(LONGEN_W) + "|" + char_class("\\s", LONGEN_W, negate=True) + "+")
"""One unit of ``W``: a single ``LONGEN_W`` character, or a run of other non-space characters."""

_CJK_WORD_RE = re.compile(char_class(CJK_WORD_CHARS))


def count_words_longen(text: str) -> int:
    """LonGen's reference word count W, kept exact so scores stay comparable with published numbers.

    Each character of ``scripts.LONGEN_W`` (CJK Unified Ideographs, CJK Symbols and Punctuation, Halfwidth and
    Fullwidth Forms) counts 1, so CJK punctuation counts too; those characters are then replaced by spaces and
    the whitespace-separated tokens of the rest are added.

    >>> count_words_longen("Hello, world!")
    2
    >>> count_words_longen("你好，世界。")
    6
    >>> count_words_longen("用Python写3个例子")
    7
    >>> count_words_longen("")
    0
    """
    cjk = len(_LONGEN_W_RE.findall(text))
    return cjk + len(_LONGEN_W_RE.sub(" ", text).split())


@functools.cache
def _unicode_word_re() -> re.Pattern[str]:
    """Word-token regex of the unicode counter; built lazily because it scans the BMP for combining marks."""
    ranges: list[tuple[int, int]] = []
    for cp in range(0x10000):
        if unicodedata.category(chr(cp)).startswith("M"):
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1] = (ranges[-1][0], cp)
            else:
                ranges.append((cp, cp))
    marks = "".join(re.escape(chr(a)) + ("-" + re.escape(chr(b)) if b > a else "") for a, b in ranges)
    word = f"[\\w{marks}]+"
    return re.compile(f"{word}(?:['\u2019-]{word})*")


def count_words_unicode(text: str) -> int:
    """A script-aware word count (the project's default for length *statistics*, not for LonGen scores).

    Rule:
    - every character of ``scripts.CJK_WORD_CHARS`` counts 1: CJK ideographs (URO, Ext A and later,
      compatibility ideographs, 々〆〇), kana letters and Hangul syllables;
    - CJK and full-width punctuation counts 0 (unlike W, which counts it);
    - everything else is counted in word tokens matching ``\\w+(?:['’-]\\w+)*``, where combining marks
      count as word characters (so Devanagari or Arabic with diacritics is not cut apart). Hence
      "don't" and "well-known" are 1 word, digits count, and "3.5" is 2 words.
    - Scripts written without spaces other than CJK (Thai, Lao, ...) count one word per spaced run.

    >>> count_words_unicode("Don't stop, it's well-known.")
    4
    >>> count_words_unicode("你好，世界。")
    4
    >>> count_words_unicode("ひらがなとカタカナ")
    9
    >>> count_words_unicode("한국어 문장")
    5
    >>> count_words_unicode("Version 3.5 of 用户")
    6
    """
    cjk = len(_CJK_WORD_RE.findall(text))
    rest = _CJK_WORD_RE.sub(" ", text)
    return cjk + sum(1 for _ in _unicode_word_re().finditer(rest))


def count_words(text: str, counter: str = "longen") -> int:
    """Count words with a named counter (one of :data:`COUNTERS`), so the choice can live in the config.

    >>> count_words("你好，世界。"), count_words("你好，世界。", "unicode")
    (6, 4)
    """
    if counter == "longen":
        return count_words_longen(text)
    if counter == "unicode":
        return count_words_unicode(text)
    raise ValueError(f"unknown word counter {counter!r}; allowed: {', '.join(COUNTERS)}")
