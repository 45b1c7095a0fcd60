"""Splitting a response: lossless sentence split, the Extender's "first part" strategies, ``keep_leading``."""

from __future__ import annotations

import math
import re

from selflen.text.counting import LONGEN_UNIT_RE
from selflen.text.rules import is_reference

__all__ = ["SPLIT_STRATEGIES", "first_part", "keep_leading", "split_sentences"]

SPLIT_STRATEGIES: tuple[str, ...] = ("paragraph_half", "sentence_half", "word_ratio")
"""Names accepted by :func:`first_part` (and by the config's ``split.strategy``)."""

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
    units = list(LONGEN_UNIT_RE.finditer(text))
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


def keep_leading(text: str, fraction: float = 2 / 3, rule: str = "selflen") -> str:
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

    ``rule="reference"`` is the reference's cut: the first ``floor(n·fraction)`` of the ``"\\n\\n"`` pieces, blank
    ones counted, so a one-paragraph text keeps nothing.

    >>> keep_leading("A\\n\\n\\n\\nB\\n\\nC", rule="reference"), keep_leading("Just one.", rule="reference")
    ('A\\n\\n', '')
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    if is_reference(rule, "keep rule"):
        pieces = text.split("\n\n")
        return "\n\n".join(pieces[: math.floor(len(pieces) * fraction + 1e-9)])
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
