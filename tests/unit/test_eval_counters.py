"""Hand-computed cases for every word counter's documented rule."""

from __future__ import annotations

import pytest

from evaluation.counters import COUNTERS, count_words, get_counter

pytestmark = pytest.mark.unit

CASES = {
    # text: (longen, longbench_write, lifebench)
    "": (0, 0, 0),
    "Hello, world!": (2, 2, 2),
    "你好，世界。": (6, 4, 4),  # full-width comma / ideographic full stop count only for longen
    "don't": (1, 2, 1),
    "It’s fine": (2, 3, 3),  # curly apostrophe: a word boundary for \b and not in [a-zA-Z0-9'-]
    "“Quoted” text…": (2, 2, 2),  # curly quotes and the ellipsis attach to their neighbours (longen)
    "2024年": (2, 1, 2),
    "I have 3 apples": (4, 3, 4),  # digits count zero for longbench_write
    "abc123": (1, 0, 1),  # no \b between c and 1
    "中文abc": (3, 2, 3),  # no \b between 文 and a
    "日本語のテキスト": (4, 3, 3),  # kana: not CJK for any reference counter (longen: one spaced run)
    "ひらがな": (1, 0, 0),
    "한국어 문장": (2, 0, 0),
    "Привет мир": (2, 0, 0),
    "e-mail state-of-the-art": (2, 6, 2),
    "3.14": (1, 0, 2),
    "ＡＢＣ": (3, 0, 0),  # full-width Latin letters are U+FF21.. : one word each for longen
    "你\u3000好": (3, 2, 2),  # the ideographic space U+3000 is inside longen's counted range
    "café": (1, 0, 1),
    "under_score": (1, 0, 2),
}


@pytest.mark.parametrize(("text", "expected"), list(CASES.items()))
def test_reference_counters(text: str, expected: tuple[int, int, int]) -> None:
    got = tuple(count_words(text, name) for name in ("longen", "longbench_write", "lifebench"))
    assert got == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Don't stop, it's well-known.", 4), ("你好，世界。", 4), ("ひらがな", 4), ("Version 3.5 of 用户", 6)],
)
def test_unicode_default_counter(text: str, expected: int) -> None:
    assert count_words(text) == expected
    assert count_words(text, "unicode") == expected


def test_registry_has_all_counters() -> None:
    assert set(COUNTERS) == {"longen", "longbench_write", "lifebench", "unicode"}


def test_unknown_counter_is_a_helpful_error() -> None:
    with pytest.raises(KeyError, match=r"Did you mean 'longen'\?.*Available: lifebench, longbench_write, longen"):
        get_counter("longenn")
    with pytest.raises(KeyError, match="Available"):
        count_words("x", "words")
