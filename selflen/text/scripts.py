"""Script character classes: the one place where code-point ranges of CJK, kana and Hangul are written down.

Every other module builds its regexes from the names below. Each constant is the *body* of a regex character
class (ranges, no brackets), so classes combine by concatenation: ``re.compile(f"[{KANA}{HANGUL_SYLLABLES}]")``.

Unicode blocks:

=========================  =====================  ===============================================
name                       ranges                 what
=========================  =====================  ===============================================
``CJK_UNIFIED``            U+4E00–U+9FFF          CJK Unified Ideographs (the URO)
``CJK_EXT_A``              U+3400–U+4DBF          CJK Unified Ideographs Extension A
``CJK_COMPAT``             U+F900–U+FAFF          CJK Compatibility Ideographs
``CJK_SUPPLEMENTARY``      U+20000–U+3134F        Extensions B–H (supplementary planes 2 and 3)
``CJK_SYMBOLS_PUNCT``      U+3000–U+303F          CJK Symbols and Punctuation (ideographic space, 。「」...)
``HALF_FULL_WIDTH``        U+FF00–U+FFEF          Halfwidth and Fullwidth Forms (，！？ ...)
``IDEOGRAPHIC_MARKS``      U+3005–U+3007          々 〆 〇
``KANA_BLOCKS``            U+3040–U+30FF          the whole Hiragana and Katakana blocks
``KANA``                   (letters only)         kana letters and iteration marks, half-width
                                                  katakana and phonetic extensions; no ・ or voicing marks
``HANGUL_SYLLABLES``       U+AC00–U+D7AF          Hangul Syllables block
``ASCII``                  U+0000–U+007F          ASCII
=========================  =====================  ===============================================

Composite classes, one per rule that needs a notion of "CJK":

- ``LONGEN_W`` — the reference word counter ``W`` (LonGen / Self-Lengthen): each of these characters is one
  word, CJK punctuation included (``CJK_UNIFIED + CJK_SYMBOLS_PUNCT + HALF_FULL_WIDTH``).
- ``REFERENCE_IDEOGRAPHS`` — the ideograph range of LongWriter's and LIFEBench's counters (``CJK_UNIFIED``
  only); also what makes a LongBench-Write prompt Chinese.
- ``IDEOGRAPHS`` — every CJK ideograph (``CJK_EXT_A + CJK_UNIFIED + CJK_COMPAT + CJK_SUPPLEMENTARY``).
- ``CJK_WORD_CHARS`` — one word each in the script-aware ``unicode`` counter (``IDEOGRAPHS +
  IDEOGRAPHIC_MARKS + KANA + HANGUL_SYLLABLES``).
- ``SINGLE_CHAR_TOKENS`` — one token each for n-gram rules (decontamination, repetition metrics):
  ``KANA_BLOCKS + IDEOGRAPHS + HANGUL_SYLLABLES``.
- ``ANY_CJK`` — union of ``CJK_WORD_CHARS`` and ``LONGEN_W``: "does this contain CJK?" and shingle units.
"""

from __future__ import annotations

import re

__all__ = [
    "ANY_CJK",
    "ASCII",
    "CJK_COMPAT",
    "CJK_EXT_A",
    "CJK_SUPPLEMENTARY",
    "CJK_SYMBOLS_PUNCT",
    "CJK_UNIFIED",
    "CJK_WORD_CHARS",
    "HALF_FULL_WIDTH",
    "HANGUL_SYLLABLES",
    "IDEOGRAPHIC_MARKS",
    "IDEOGRAPHS",
    "KANA",
    "KANA_BLOCKS",
    "LONGEN_W",
    "REFERENCE_IDEOGRAPHS",
    "SINGLE_CHAR_TOKENS",
    "char_class",
    "has_cjk",
]

# ---- Unicode blocks ------------------------------------------------------------------------------------------
CJK_UNIFIED = "\u4e00-\u9fff"
CJK_EXT_A = "\u3400-\u4dbf"
CJK_COMPAT = "\uf900-\ufaff"
CJK_SUPPLEMENTARY = "\U00020000-\U0003134f"
CJK_SYMBOLS_PUNCT = "\u3000-\u303f"
HALF_FULL_WIDTH = "\uff00-\uffef"
IDEOGRAPHIC_MARKS = "\u3005-\u3007"
KANA_BLOCKS = "\u3040-\u30ff"
# hiragana letters, ゝゞゟ, katakana letters, ーヽヾヿ, katakana phonetic extensions, half-width katakana
KANA = "\u3041-\u3096\u309d-\u309f\u30a1-\u30fa\u30fc-\u30ff\u31f0-\u31ff\uff66-\uff9d"
HANGUL_SYLLABLES = "\uac00-\ud7af"
ASCII = "\x00-\x7f"

# ---- Composite classes (see the module docstring for which rule uses which) ----------------------------------
LONGEN_W = CJK_UNIFIED + CJK_SYMBOLS_PUNCT + HALF_FULL_WIDTH
REFERENCE_IDEOGRAPHS = CJK_UNIFIED
IDEOGRAPHS = CJK_EXT_A + CJK_UNIFIED + CJK_COMPAT + CJK_SUPPLEMENTARY
CJK_WORD_CHARS = IDEOGRAPHS + IDEOGRAPHIC_MARKS + KANA + HANGUL_SYLLABLES
SINGLE_CHAR_TOKENS = KANA_BLOCKS + IDEOGRAPHS + HANGUL_SYLLABLES
ANY_CJK = CJK_WORD_CHARS + LONGEN_W


def char_class(*classes: str, negate: bool = False) -> str:
    """A bracketed regex class of the given class bodies.

    >>> char_class(CJK_UNIFIED)
    '[一-鿿]'
    >>> re.findall(char_class(KANA, HANGUL_SYLLABLES), "カナ and 한글")
    ['カ', 'ナ', '한', '글']
    """
    return f"[{'^' if negate else ''}{''.join(classes)}]"


_ANY_CJK_RE = re.compile(char_class(ANY_CJK))


def has_cjk(text: str) -> bool:
    """Whether ``text`` holds any character of :data:`ANY_CJK` (ideographs, kana, Hangul, CJK punctuation).

    >>> has_cjk("修改后"), has_cjk("revised"), has_cjk("，")
    (True, False, True)
    """
    return _ANY_CJK_RE.search(text) is not None
