"""Small pure text rules of Self-Lengthen: word counting, splitting, filters, sampling, dedup, judge parsing.

Every rule the method applies to a piece of text lives here as a side-effect-free function, so that each
one can be unit-tested by hand and reused by the stages. Where the reference implementation
(QwenLM/Self-Lengthen, see ``docs/self-lengthen.md``) has a known bug, the function fixes it and its
docstring says so; the reference behaviour is kept wherever it is only a convention (the ``W`` word
counter, paragraph-half splitting, the ``1 - 2r^3`` length bias).

Randomness never comes from a global: functions that sample take a ``random.Random`` and draw from it in
a documented order, so every result is reproducible from a seed.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is only needed (and imported) by the dedup functions
    import numpy as np

__all__ = [
    "COUNTERS",
    "LLAMA_END_PUNCT",
    "META_WORDS",
    "NGRAM_TOKENIZERS",
    "QWEN_END_PUNCT",
    "REASONS",
    "REASON_EMPTY",
    "REASON_END_PUNCT",
    "REASON_META_TEXT",
    "REASON_REPEATED_NGRAM",
    "REASON_TOO_SHORT",
    "SPLIT_STRATEGIES",
    "FilterRules",
    "accept_extension",
    "check_response",
    "count_words",
    "count_words_longen",
    "count_words_unicode",
    "dedup_mask",
    "ends_with_punct",
    "first_part",
    "keep_leading",
    "keep_probability",
    "length_biased_keep",
    "meta_text",
    "normalise",
    "parse_yes_no",
    "remove_lines",
    "repeated_ngram",
    "shingles",
    "split_sentences",
]

# ----------------------------------------------------------------------------------------------------
# Word counting
# ----------------------------------------------------------------------------------------------------

# The reference W: CJK Unified Ideographs, CJK Symbols and Punctuation, Halfwidth and Fullwidth Forms.
_LONGEN_CJK = "\u4e00-\u9fff\u3000-\u303f\uff00-\uffef"
_LONGEN_CJK_RE = re.compile(f"[{_LONGEN_CJK}]")
# One "unit" of W: a single CJK-range character, or a run of other non-space characters.
_LONGEN_UNIT_RE = re.compile(f"[{_LONGEN_CJK}]|[^\\s{_LONGEN_CJK}]+")

# Characters that are one word each in the unicode counter: ideographs (URO, Ext A, compatibility,
# the supplementary planes' Ext B..), the iteration/closing marks 々〆〇, kana (without the ・ middle dot)
# and Hangul syllables.
_UNICODE_CJK = (
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
    "\u3005-\u3007"
    "\u3041-\u3096\u309d-\u309f\u30a1-\u30fa\u30fc-\u30ff\u31f0-\u31ff\uff66-\uff9d"
    "\uac00-\ud7af"
)
_UNICODE_CJK_RE = re.compile(f"[{_UNICODE_CJK}]")

COUNTERS: tuple[str, ...] = ("longen", "unicode")


def count_words_longen(text: str) -> int:
    """LonGen's reference word count W, kept exact so scores stay comparable with published numbers.

    Each character in U+4E00–9FFF, U+3000–303F or U+FF00–FFEF counts 1 (so CJK punctuation counts too);
    those characters are then replaced by spaces and the whitespace-separated tokens of the rest are added.

    >>> count_words_longen("Hello, world!")
    2
    >>> count_words_longen("你好，世界。")
    6
    >>> count_words_longen("用Python写3个例子")
    7
    >>> count_words_longen("")
    0
    """
    cjk = len(_LONGEN_CJK_RE.findall(text))
    return cjk + len(_LONGEN_CJK_RE.sub(" ", text).split())


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
    - every CJK ideograph (URO, Ext A and later, compatibility ideographs, 々〆〇), every kana character
      and every Hangul syllable counts 1;
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
    cjk = len(_UNICODE_CJK_RE.findall(text))
    rest = _UNICODE_CJK_RE.sub(" ", text)
    return cjk + sum(1 for _ in _unicode_word_re().finditer(rest))


def count_words(text: str, counter: str = "longen") -> int:
    """Count words with a named counter, so the choice can live in the config.

    >>> count_words("你好，世界。"), count_words("你好，世界。", "unicode")
    (6, 4)
    """
    if counter == "longen":
        return count_words_longen(text)
    if counter == "unicode":
        return count_words_unicode(text)
    raise ValueError(f"unknown word counter {counter!r}; allowed: {', '.join(COUNTERS)}")


# ----------------------------------------------------------------------------------------------------
# Splitting
# ----------------------------------------------------------------------------------------------------

SPLIT_STRATEGIES: tuple[str, ...] = ("paragraph_half", "sentence_half", "word_ratio")

_CLOSERS = "\"'\u201d\u2019)\\]\u300d\u300f\uff09\u300b\u3011"
# A sentence ends at ASCII .!? (or …) followed by optional closing quotes/brackets and then whitespace or
# the end; at CJK 。！？ (no whitespace needed); or at a line break. Trailing whitespace joins the sentence.
_SENTENCE_END_RE = re.compile(
    f"(?:[.!?\u2026]+[{_CLOSERS}]*(?=\\s|$)|[\u3002\uff01\uff1f][\u3002\uff01\uff1f!?\u2026]*[{_CLOSERS}]*)\\s*"
    "|\\n\\s*"
)


def split_sentences(text: str) -> list[str]:
    """Split text into sentences losslessly (``"".join(result) == text``), for sentence-level cuts.

    Sentence ends are English ``.!?…`` followed by whitespace (closing quotes allowed), CJK ``。！？``, and
    line breaks; each piece keeps its punctuation and trailing whitespace. Abbreviations such as "e.g. "
    also end a sentence (a known, accepted limitation). Whitespace-only text gives ``[]``.

    >>> split_sentences("One. Two! Three")
    ['One. ', 'Two! ', 'Three']
    >>> split_sentences("第一句。第二句！第三句？")
    ['第一句。', '第二句！', '第三句？']
    >>> split_sentences("Title\\n\\nPi is 3.14 or so.")
    ['Title\\n\\n', 'Pi is 3.14 or so.']
    """
    if not text.strip():
        return []
    pieces: list[str] = []
    start = 0
    pending = ""  # whitespace-only pieces are merged into the next sentence
    for m in _SENTENCE_END_RE.finditer(text):
        if m.end() <= start:
            continue
        piece = pending + text[start : m.end()]
        start = m.end()
        if piece.strip():
            pieces.append(piece)
            pending = ""
        else:
            pending = piece
    tail = pending + text[start:]
    if tail.strip() or not pieces:
        pieces.append(tail)
    else:
        pieces[-1] += tail
    return pieces


def _paragraph_half(text: str) -> str:
    parts, sep = text.split("\n\n"), "\n\n"
    if len(parts) <= 2:
        parts, sep = text.split("\n"), "\n"
    return sep.join(parts[: len(parts) // 2])


def _sentence_half(text: str) -> str:
    pieces = split_sentences(text)
    return "".join(pieces[: len(pieces) // 2]).rstrip()


def _word_ratio(text: str, ratio: float) -> str:
    units = list(_LONGEN_UNIT_RE.finditer(text))
    k = math.floor(ratio * len(units))
    if k <= 0:
        return ""
    cut = units[k - 1].end()
    best = 0
    pos = 0
    for piece in split_sentences(text):
        end = pos + len(piece.rstrip())
        pos += len(piece)
        if end > cut:
            break
        best = end
    return text[: best if best > 0 else cut].rstrip()


def first_part(text: str, strategy: str, ratio: float = 0.5) -> str:
    """The "first part" of a response that the Extender's stage 1 expands on its own.

    Strategies:
    - ``paragraph_half`` (reference): split on ``"\\n\\n"``, or on ``"\\n"`` when that gives ≤ 2 pieces;
      keep the first ``floor(len/2)`` pieces joined with the separator used. A one-line text gives "".
    - ``sentence_half``: the first ``floor(n/2)`` sentences (see :func:`split_sentences`); "" for one.
    - ``word_ratio``: the first ``floor(ratio·W)`` words (W units, see :func:`count_words_longen`), cut back
      to the last sentence or line end at or before that word when there is one, else at the word.

    >>> first_part("A\\n\\nB\\n\\nC\\n\\nD", "paragraph_half")
    'A\\n\\nB'
    >>> first_part("A\\nB\\nC", "paragraph_half")
    'A'
    >>> first_part("One. Two. Three. Four. Five.", "sentence_half")
    'One. Two.'
    >>> first_part("One two three. Four five six seven.", "word_ratio", 0.5)
    'One two three.'
    """
    if strategy == "paragraph_half":
        return _paragraph_half(text)
    if strategy == "sentence_half":
        return _sentence_half(text)
    if strategy == "word_ratio":
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"ratio must be in (0, 1], got {ratio}")
        return _word_ratio(text, ratio)
    raise ValueError(f"unknown split strategy {strategy!r}; allowed: {', '.join(SPLIT_STRATEGIES)}")


def keep_leading(text: str, fraction: float = 2 / 3) -> str:
    """Keep the leading ``fraction`` of a stage-1 expansion, dropping its likely conclusion.

    Paragraphs are split on ``"\\n\\n"`` (blank pieces from runs of newlines are not counted) and the first
    ``floor(n·fraction)`` are kept. Fixes the reference, which returns "" for a one-paragraph text: with
    fewer than 2 paragraphs the cut is made by sentences instead; with ≥ 2 units at least 1 is kept, and a
    single sentence is kept whole (dropping it would leave nothing to continue from).

    >>> keep_leading("A\\n\\nB\\n\\nC")
    'A\\n\\nB'
    >>> keep_leading("A\\n\\nB")
    'A'
    >>> keep_leading("One. Two. Three.")
    'One. Two.'
    >>> keep_leading("Just one sentence.")
    'Just one sentence.'
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    if not text.strip():
        return ""
    parts = text.split("\n\n")
    content = [i for i, p in enumerate(parts) if p.strip()]
    if len(content) >= 2:
        k = max(1, math.floor(len(content) * fraction))
        return "\n\n".join(parts[: content[k - 1] + 1]).rstrip()
    pieces = split_sentences(text)
    if len(pieces) < 2:
        return text.rstrip()
    k = max(1, math.floor(len(pieces) * fraction))
    return "".join(pieces[:k]).rstrip()


# ----------------------------------------------------------------------------------------------------
# Quality filters (section 2.4)
# ----------------------------------------------------------------------------------------------------

# The reference end-punctuation sets (the Qwen one is Chinese-only: ASCII . ! ? are absent).
QWEN_END_PUNCT = "\u3002\uff01\uff1f\u201d\u2019\u2026\uff09\u3011)]}>`"
LLAMA_END_PUNCT = ".!?,;:-\"')]}>`"
META_WORDS: tuple[str, ...] = ("revised", "revision", "response", "version", "paragraph")
NGRAM_TOKENIZERS: tuple[str, ...] = ("whitespace", "cjk")

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
_CJK_TOKEN_RE = re.compile(r"[\x00-\x7f]+|[^\x00-\x7f]")


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


def _has_cjk(word: str) -> bool:
    return bool(_UNICODE_CJK_RE.search(word) or _LONGEN_CJK_RE.search(word))


@functools.lru_cache(maxsize=64)
def _meta_pattern(words: tuple[str, ...]) -> re.Pattern[str] | None:
    alts = [re.escape(w) if _has_cjk(w) else rf"\b{re.escape(w)}\b" for w in words if w]
    return re.compile("|".join(alts), re.IGNORECASE) if alts else None


def meta_text(text: str, words: Sequence[str], head: int = 2, tail: int = 3) -> bool:
    """True if one of ``words`` appears in the first ``head`` or last ``tail`` non-empty lines.

    Catches a model talking about its own edit ("Here is the revised version:"). Unlike the reference
    (case-sensitive substring), matching is case-insensitive and on whole words, so "Response" is caught
    while "conversion", "responses" and "paragraphs" are not; words containing CJK are plain substrings.

    >>> meta_text("Here is the Revised text:\\nBody.", META_WORDS)
    True
    >>> meta_text("A conversion of paragraphs.\\nBody.", META_WORDS)
    False
    >>> meta_text("以下是修改后的版本：\\n正文。", ("修改后",))
    True
    """
    pattern = _meta_pattern(tuple(words))
    if pattern is None:
        return False
    lines = [line for line in text.splitlines() if line.strip()]
    picked = lines[: max(head, 0)] + (lines[len(lines) - tail :] if tail > 0 else [])
    return any(pattern.search(line) for line in picked)


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

    def __post_init__(self) -> None:
        if self.ngram_n < 0:
            raise ValueError(f"ngram_n must be >= 0, got {self.ngram_n}")
        if self.ngram_tokenizer not in NGRAM_TOKENIZERS:
            raise ValueError(f"unknown n-gram tokenizer {self.ngram_tokenizer!r}; allowed: {NGRAM_TOKENIZERS}")
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
    if rules.meta_words and meta_text(text, rules.meta_words):
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


# ----------------------------------------------------------------------------------------------------
# Length-biased sampling (section 2.5) and random line removal (section 3.1)
# ----------------------------------------------------------------------------------------------------


def keep_probability(rank: float) -> float:
    """P(keep) of the length bias for rank ``r = 1 - i/N`` (1 = shortest): ``max(0, 1 - 2r^3)``.

    >>> keep_probability(1.0), keep_probability(0.5), keep_probability(0.0)
    (0.0, 0.75, 1.0)
    """
    return max(0.0, 1.0 - 2.0 * rank**3)


def length_biased_keep(lengths: Sequence[int], rng: random.Random) -> list[bool]:
    """Which items survive the reference's length bias, which pushes each iteration's data longer.

    ``i`` is the index of the first occurrence of an item's length in the ascending sort (ties share the
    lowest index, as in the reference), ``r = 1 - i/N``, and the item is kept iff ``rng.random() > 2r^3``.
    Exactly one number is drawn per item, in input order. O(N log N) instead of the reference's O(N^2).
    About 59.5% of distinct lengths are kept; the shortest ~20.6% never are.

    >>> length_biased_keep([], random.Random(0))
    []
    >>> length_biased_keep([5, 5], random.Random(0))  # both tie with the shortest: r = 1, always dropped
    [False, False]
    """
    n = len(lengths)
    first: dict[int, int] = {}
    for i, length in enumerate(sorted(lengths)):
        first.setdefault(length, i)
    return [rng.random() > 2.0 * (1.0 - first[length] / n) ** 3 for length in lengths]


def remove_lines(text: str, p_keep: float, rng: random.Random, joiner: str = "\n") -> str:
    """Randomly delete lines of an outline, so the Extender learns to add content rather than paraphrase.

    The text is split on ``"\\n"``; each non-blank line is kept independently with probability ``p_keep``
    (one ``rng.random()`` per non-blank line, in order) and the result is joined with ``joiner``.
    Decision: blank lines are structure, not content — they are never dropped and draw no number; but a
    blank line that would directly follow another kept blank line (or start the text) after a removal is
    skipped, so a deleted paragraph leaves no gap. If every non-blank line was drawn out, one of them,
    chosen with ``rng``, is kept, so a non-empty input never yields an empty outline.

    >>> remove_lines("a\\nb\\nc", 1.0, random.Random(0))
    'a\\nb\\nc'
    >>> remove_lines("a\\n\\nb", 1.0, random.Random(0), joiner="\\n\\n")
    'a\\n\\n\\n\\nb'
    """
    if not 0.0 <= p_keep <= 1.0:
        raise ValueError(f"p_keep must be in [0, 1], got {p_keep}")
    lines = text.split("\n")
    content = [i for i, line in enumerate(lines) if line.strip()]
    keep = {i: rng.random() < p_keep for i in content}
    if content and not any(keep.values()):
        keep[rng.choice(content)] = True
    out: list[str] = []
    dropped_since_last = False
    for i, line in enumerate(lines):
        if i in keep:
            if keep[i]:
                out.append(line)
                dropped_since_last = False
            else:
                dropped_since_last = True
        elif not (dropped_since_last and (not out or not out[-1].strip())):
            out.append(line)
            dropped_since_last = False
    if lines and lines[-1].strip():  # a removal at the end must not leave trailing blank lines behind
        while out and not out[-1].strip():
            out.pop()
    return joiner.join(out)


# ----------------------------------------------------------------------------------------------------
# Deduplication (exact + MinHash LSH)
# ----------------------------------------------------------------------------------------------------

_SHINGLE_UNIT_RE = re.compile(f"[{_UNICODE_CJK}{_LONGEN_CJK}]|[^\\s{_UNICODE_CJK}{_LONGEN_CJK}]+")
_MASK64 = (1 << 64) - 1


def normalise(text: str) -> str:
    """Lower-case and collapse whitespace: the form in which two texts count as exact duplicates.

    >>> normalise("  Hello\\n\\n  World ")
    'hello world'
    """
    return " ".join(text.lower().split())


def shingles(text: str, n: int = 5) -> set[str]:
    """The set of ``n``-token shingles of the normalised text (the unit of near-duplicate Jaccard).

    Tokens are CJK/kana/Hangul characters one by one and whitespace-separated runs of anything else, so
    Chinese text without spaces still gets meaningful shingles. A text shorter than ``n`` tokens gives one
    shingle (itself); an empty text gives the empty set.

    >>> sorted(shingles("A b C d", 3))
    ['a b c', 'b c d']
    >>> sorted(shingles("你好吗", 2))
    ['你 好', '好 吗']
    >>> shingles("short", 5)
    {'short'}
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    tokens = _SHINGLE_UNIT_RE.findall(normalise(text))
    if not tokens:
        return set()
    if len(tokens) < n:
        return {" ".join(tokens)}
    return {" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def _stable_hash64(s: str) -> int:
    return int.from_bytes(hashlib.blake2b(s.encode("utf-8"), digest_size=8).digest(), "little")


def _shingle_hashes(text: str, n: int) -> np.ndarray:
    import numpy as np

    return np.unique(np.fromiter((_stable_hash64(s) for s in shingles(text, n)), dtype=np.uint64))


def _minhash(hashes: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """MinHash signature: per seed, min over shingles of a splitmix64 mix of ``hash XOR seed``."""
    import numpy as np

    if hashes.size == 0:
        return np.full(seeds.shape, np.iinfo(np.uint64).max, dtype=np.uint64)
    z = hashes[None, :] ^ seeds[:, None]
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return z.min(axis=1)


def _band_rows(num_perm: int, threshold: float) -> int:
    """Rows per LSH band: the largest divisor of ``num_perm`` still catching a pair at ``threshold`` w.p. ≥ 0.99.

    >>> _band_rows(64, 0.8)
    4
    """
    for rows in sorted((r for r in range(1, num_perm + 1) if num_perm % r == 0), reverse=True):
        bands = num_perm // rows
        if 1.0 - (1.0 - threshold**rows) ** bands >= 0.99:
            return rows
    return 1


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    import numpy as np

    if a.size == 0 and b.size == 0:
        return 1.0
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (a.size + b.size - inter)


def dedup_mask(
    texts: Sequence[str], threshold: float = 0.8, n: int = 5, num_perm: int = 64, seed: int = 0
) -> list[bool]:
    """Which texts to keep so that no exact or near duplicate of an earlier kept text survives.

    Exact duplicates are compared after :func:`normalise`. Near duplicates are found with MinHash
    (``num_perm`` splitmix64 permutations of blake2b shingle hashes) and LSH banding, and confirmed by the
    exact Jaccard similarity of the shingle sets (``>= threshold``). Texts are visited in order and each
    is compared with the texts kept so far, so the first of each cluster is kept. Deterministic: no
    process-salted ``hash()`` is used; ``seed`` only picks the permutations.

    >>> dedup_mask(["Same text.", "same   TEXT.", "Different."])
    [True, False, True]
    """
    import numpy as np

    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if num_perm < 1:
        raise ValueError(f"num_perm must be >= 1, got {num_perm}")
    srng = random.Random(seed)
    seeds = np.array([srng.getrandbits(64) for _ in range(num_perm)], dtype=np.uint64)
    rows = _band_rows(num_perm, threshold)
    bands = num_perm // rows

    @functools.lru_cache(maxsize=512)
    def hashes_of(i: int) -> np.ndarray:
        return _shingle_hashes(texts[i], n)

    seen_exact: set[str] = set()
    buckets: dict[tuple[int, bytes], list[int]] = {}
    mask: list[bool] = []
    for i, text in enumerate(texts):
        norm = normalise(text)
        if norm in seen_exact:
            mask.append(False)
            continue
        seen_exact.add(norm)
        sig = _minhash(hashes_of(i), seeds)
        keys = [(b, sig[b * rows : (b + 1) * rows].tobytes()) for b in range(bands)]
        candidates = sorted({j for key in keys for j in buckets.get(key, ())})
        if any(_jaccard(hashes_of(i), hashes_of(j)) >= threshold for j in candidates):
            mask.append(False)
            continue
        mask.append(True)
        for key in keys:
            buckets.setdefault(key, []).append(i)
    return mask


# ----------------------------------------------------------------------------------------------------
# Judge parsing
# ----------------------------------------------------------------------------------------------------

_JUNK_RE = re.compile(r"[\W_]*")
_LABEL_RE = re.compile(
    r"(?:final answer|answer|judgement|judgment|verdict|decision|output|回答|答案|判断|结论|结果)\s*[:：]"
)
_NO_RE = re.compile(r"(?:no(?![a-z])|not(?![a-z])|不是|不适合|不合适|不可以|不能|不行|否)")
_YES_RE = re.compile(r"(?:yes(?![a-z])|是的|是|适合|合适|可以)")
_CONNECTOR_RE = re.compile(r"\s*(?:/|\||or(?![a-z])|and(?![a-z])|或者|或|还是|和|与)?\s*")


def parse_yes_no(text: str) -> bool | None:
    """Read a judge's yes/no verdict robustly (the reference accepted only an exact "是" / "yes").

    The first meaningful token decides, after stripping whitespace, markdown, quotes and punctuation and
    an optional label ("Answer:", "答案：" ...). Yes: ``yes``, 是, 是的, 适合, 合适, 可以; no: ``no``,
    ``not``, 不是, 不适合, 不合适, 不可以, 不能, 不行, 否 (any case; "yesterday"/"nothing" are not verdicts,
    and a bare 不 is not one either since 不错 means "good"). ``None`` when it cannot
    tell: the text starts with something else ("I think yes") or offers both ("yes/no", "是否").

    >>> [parse_yes_no(t) for t in ["Yes.", "**No**", "yes, because it is long", "是的，适合", "不适合"]]
    [True, False, True, True, False]
    >>> [parse_yes_no(t) for t in ["Yes/No", "是否", "Maybe", "", "Answer: NO"]]
    [None, None, None, None, False]
    """
    s = text.strip().lower()
    pos = _JUNK_RE.match(s).end()  # type: ignore[union-attr]
    label = _LABEL_RE.match(s, pos)
    if label:
        pos = _JUNK_RE.match(s, label.end()).end()  # type: ignore[union-attr]
    verdict: bool | None = None
    m = _NO_RE.match(s, pos)
    if m:
        verdict = False
    else:
        m = _YES_RE.match(s, pos)
        if m:
            verdict = True
    if m is None:
        return None
    after = _CONNECTOR_RE.match(s, m.end()).end()  # type: ignore[union-attr]
    opposite = _YES_RE if verdict is False else _NO_RE
    if opposite.match(s, after):
        return None
    return verdict
