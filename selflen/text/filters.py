"""Quality filters of generated responses (section 2.4) and the Extender's growth test.

End punctuation, repeated n-grams, meta text about the model's own edit and a minimum length, bundled per
language in :class:`FilterRules` and applied by :func:`check_response`, which names the first failed rule
with one of the ``REASON_*`` constants.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from selflen.text.counting import COUNTERS, count_words
from selflen.text.scripts import ASCII, char_class, has_cjk

__all__ = [
    "LLAMA_END_PUNCT",
    "META_MATCHES",
    "META_WORDS",
    "NGRAM_TOKENIZERS",
    "QWEN_END_PUNCT",
    "REASONS",
    "REASON_EMPTY",
    "REASON_END_PUNCT",
    "REASON_META_TEXT",
    "REASON_REPEATED_NGRAM",
    "REASON_TOO_SHORT",
    "FilterRules",
    "accept_extension",
    "check_response",
    "ends_with_punct",
    "meta_text",
    "repeated_ngram",
]

# The reference end-punctuation sets (the Qwen one is Chinese-only: ASCII . ! ? are absent).
QWEN_END_PUNCT = "\u3002\uff01\uff1f\u201d\u2019\u2026\uff09\u3011)]}>`"
LLAMA_END_PUNCT = ".!?,;:-\"')]}>`"
META_WORDS: tuple[str, ...] = ("revised", "revision", "response", "version", "paragraph")
NGRAM_TOKENIZERS: tuple[str, ...] = ("whitespace", "cjk")
"""Names accepted by :func:`repeated_ngram` (and by the config's ``language.ngram_tokenizer``)."""

REASON_EMPTY = "empty"
REASON_TOO_SHORT = "too_short"
REASON_END_PUNCT = "end_punct"
REASON_REPEATED_NGRAM = "repeated_ngram"
REASON_META_TEXT = "meta_text"
REASONS: tuple[str, ...] = (
    REASON_EMPTY,
    REASON_TOO_SHORT,
    REASON_END_PUNCT,
    REASON_META_TEXT,
    REASON_REPEATED_NGRAM,
)

# The reference's Chinese tokenisation: each non-ASCII char is a token, each run of ASCII chars is one.
_CJK_TOKEN_RE = re.compile(char_class(ASCII) + "+|" + char_class(ASCII, negate=True))


def ends_with_punct(text: str, endings: str) -> bool:
    """True if the right-stripped text ends with one of the characters in ``endings`` (cut-off detector).

    >>> ends_with_punct("Done.  ", ".!?")
    True
    >>> ends_with_punct("完成了。", ".!?")
    False
    >>> ends_with_punct("   ", ".")
    False
    """
    stripped = text.rstrip()
    return bool(stripped) and stripped[-1] in endings


def _ngram_tokens(text: str, tokenizer: str) -> list[str]:
    if tokenizer == "whitespace":
        return text.split()
    if tokenizer == "cjk":
        return _CJK_TOKEN_RE.findall(text)
    raise ValueError(f"unknown n-gram tokenizer {tokenizer!r}; allowed: {', '.join(NGRAM_TOKENIZERS)}")


def repeated_ngram(text: str, n: int, tokenizer: str = "whitespace") -> bool:
    """True if some window of ``n`` consecutive tokens occurs twice (overlaps count): a degeneration check.

    Tokenizers: ``whitespace`` (``str.split``) and ``cjk`` (each non-ASCII character is a token and each
    maximal run of ASCII characters, spaces included, is one token — the reference's Chinese rule).

    >>> repeated_ngram("a b c a b c", 3)
    True
    >>> repeated_ngram("a b c a b d", 3)
    False
    >>> repeated_ngram("天气很好。天气很好。", 4, "cjk")
    True
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    tokens = _ngram_tokens(text, tokenizer)
    seen: set[tuple[str, ...]] = set()
    for i in range(len(tokens) - n + 1):
        window = tuple(tokens[i : i + n])
        if window in seen:
            return True
        seen.add(window)
    return False


@functools.lru_cache(maxsize=64)
def _meta_pattern(words: tuple[str, ...]) -> re.Pattern[str] | None:
    alts = [re.escape(w) if has_cjk(w) else rf"\b{re.escape(w)}\b" for w in words if w]
    return re.compile("|".join(alts), re.IGNORECASE) if alts else None


META_MATCHES: tuple[str, ...] = ("words", "substring")
"""How :func:`meta_text` matches: ``words`` (selflen) or ``substring`` (the reference)."""


def meta_text(text: str, words: Sequence[str], head: int = 2, tail: int = 3, match: str = "words") -> bool:
    """True if one of ``words`` appears in the first ``head`` or last ``tail`` non-empty lines.

    ``match="substring"`` is the reference's rule instead: a case-sensitive substring of the first ``head`` or
    last ``tail`` lines, blank lines counted.

    Catches a model talking about its own edit ("Here is the revised version:"). Unlike the reference
    (case-sensitive substring), matching is case-insensitive and on whole words, so "Response" is caught
    while "conversion", "responses" and "paragraphs" are not; words containing CJK are plain substrings.

    >>> meta_text("Here is the Revised text:\\nBody.", META_WORDS)
    True
    >>> meta_text("A conversion of paragraphs.\\nBody.", META_WORDS)
    False
    >>> meta_text("以下是修改后的版本：\\n正文。", ("修改后",))
    True
    >>> [meta_text(t, META_WORDS, match="substring") for t in ("A conversion.\\nBody.", "Response:\\nBody.")]
    [True, False]
    """
    if match == "substring":
        lines = text.split("\n")
        picked = lines[: max(head, 0)] + (lines[len(lines) - tail :] if tail > 0 else [])
        return any(w and w in line for w in words for line in picked)
    if match != "words":
        raise ValueError(f"unknown meta match {match!r}; allowed: {', '.join(META_MATCHES)}")
    pattern = _meta_pattern(tuple(words))
    if pattern is None:
        return False
    lines = [line for line in text.splitlines() if line.strip()]
    picked = lines[: max(head, 0)] + (lines[len(lines) - tail :] if tail > 0 else [])
    return any(pattern.search(line) for line in picked)


def strip_meta_lines(text: str, words: Sequence[str], head: int = 2, tail: int = 3) -> str:
    """Remove the lines of the first ``head`` and last ``tail`` non-empty lines that :func:`meta_text` would flag
    (a model's "Here is the revised version:" preamble or "This revised text adds ..." coda), keeping the body.

    The reference drops such an answer; ``extend.strip_meta`` keeps the body instead, which the filters then judge.

    >>> strip_meta_lines("Here is the revised version:\\n\\nTea is old.\\nIt spread.", META_WORDS)
    'Tea is old.\\nIt spread.'
    >>> strip_meta_lines("Tea is old.\\nThis revised text adds detail.", META_WORDS)
    'Tea is old.'
    >>> strip_meta_lines("A conversion story.\\nBody.", META_WORDS)
    'A conversion story.\\nBody.'
    """
    pattern = _meta_pattern(tuple(words))
    if pattern is None:
        return text
    lines = text.splitlines()
    body = [i for i, line in enumerate(lines) if line.strip()]
    flagged = {i for i in body[: max(head, 0)] + (body[len(body) - tail :] if tail > 0 else [])
               if pattern.search(lines[i])}
    return "\n".join(line for i, line in enumerate(lines) if i not in flagged).strip()


@dataclass(frozen=True)
class FilterRules:
    """One language's response filter: end punctuation, repeated n-grams, meta text, minimum length.

    ``end_punct=None`` turns the punctuation rule off, ``ngram_n=0`` the n-gram rule, an empty
    ``meta_words`` the meta-text rule.
    """

    end_punct: str | None
    ngram_n: int
    ngram_tokenizer: str
    meta_words: tuple[str, ...]
    min_words: int = 1
    counter: str = "longen"
    meta_match: str = "words"  # words (selflen) | substring (the reference)

    def __post_init__(self) -> None:
        if self.ngram_n < 0:
            raise ValueError(f"ngram_n must be >= 0, got {self.ngram_n}")
        if self.ngram_tokenizer not in NGRAM_TOKENIZERS:
            raise ValueError(f"unknown n-gram tokenizer {self.ngram_tokenizer!r}; allowed: {NGRAM_TOKENIZERS}")
        if self.meta_match not in META_MATCHES:
            raise ValueError(f"unknown meta match {self.meta_match!r}; allowed: {META_MATCHES}")
        if self.counter not in COUNTERS:
            raise ValueError(f"unknown word counter {self.counter!r}; allowed: {COUNTERS}")
        object.__setattr__(self, "meta_words", tuple(self.meta_words))


def check_response(text: str, rules: FilterRules) -> str | None:
    """Why a generated response is dropped (one of ``REASONS``), or ``None`` if it passes.

    Checks run cheapest first: empty, too short, end punctuation, meta text, repeated n-gram.

    >>> zh = FilterRules(QWEN_END_PUNCT, 13, "cjk", ())
    >>> check_response("这是一个完整的回答。", zh) is None
    True
    >>> check_response("An English answer.", zh)
    'end_punct'
    """
    if not text.strip():
        return REASON_EMPTY
    if count_words(text, rules.counter) < rules.min_words:
        return REASON_TOO_SHORT
    if rules.end_punct is not None and not ends_with_punct(text, rules.end_punct):
        return REASON_END_PUNCT
    if rules.meta_words and meta_text(text, rules.meta_words, match=rules.meta_match):
        return REASON_META_TEXT
    if rules.ngram_n > 0 and repeated_ngram(text, rules.ngram_n, rules.ngram_tokenizer):
        return REASON_REPEATED_NGRAM
    return None


def accept_extension(orig_words: int, new_words: int, min_ratio: float) -> bool:
    """Whether an extension grew enough to be kept (strictly more than ``min_ratio`` × the original).

    >>> accept_extension(100, 121, 1.2), accept_extension(100, 120, 1.2), accept_extension(0, 1, 1.2)
    (True, False, True)
    """
    if orig_words <= 0:
        return new_words > 0
    return new_words > min_ratio * orig_words
