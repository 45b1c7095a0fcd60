"""Small pure text rules of Self-Lengthen, one module per kind of rule.

Every rule the method applies to a piece of text is a side-effect-free function, so that each one can be
unit-tested by hand and reused by the stages. Where the reference implementation (QwenLM/Self-Lengthen, see
``shared/docs/self-lengthen.md``) has a known bug, the function fixes it and its docstring says so; the reference
behaviour is kept wherever it is only a convention (the ``W`` word counter, paragraph-half splitting, the
``1 - 2r^3`` length bias). Functions that sample take a ``random.Random``, never a global.

Which file holds which rule:

=================  ===========================================================================================
``scripts.py``     the script character classes (CJK ideographs, CJK punctuation, kana, Hangul, ASCII): the
                   only place in selflen and evaluation where their code-point ranges are written
``counting.py``    word counters: LonGen's ``W`` (``count_words_longen``), ``count_words_unicode``,
                   ``count_words`` by name; ``COUNTERS``
``split.py``       ``split_sentences``, the Extender's ``first_part`` strategies (``SPLIT_STRATEGIES``),
                   ``keep_leading``
``filters.py``     response filters: ``FilterRules``, ``check_response`` and its ``REASON_*`` codes, end
                   punctuation (``QWEN_END_PUNCT``, ``LLAMA_END_PUNCT``), ``repeated_ngram``
                   (``NGRAM_TOKENIZERS``), ``meta_text`` (``META_WORDS``); ``accept_extension``
``sampling.py``    ``keep_probability``, ``length_biased_keep``, ``remove_lines``
``dedup.py``       ``normalise``, ``shingles``, MinHash ``dedup_mask``
``verdict.py``     ``parse_yes_no`` (a judge's yes/no verdict)
=================  ===========================================================================================

Everything public is re-exported here, so ``from selflen.text import count_words`` keeps working.
"""

from __future__ import annotations

from selflen.text.counting import COUNTERS, count_words, count_words_longen, count_words_unicode
from selflen.text.dedup import dedup_mask, normalise, shingles
from selflen.text.filters import (
    LLAMA_END_PUNCT,
    META_WORDS,
    NGRAM_TOKENIZERS,
    QWEN_END_PUNCT,
    REASON_EMPTY,
    REASON_END_PUNCT,
    REASON_META_TEXT,
    REASON_REPEATED_NGRAM,
    REASON_TOO_SHORT,
    REASONS,
    FilterRules,
    accept_extension,
    check_response,
    ends_with_punct,
    meta_text,
    repeated_ngram,
    strip_meta_lines,
)
from selflen.text.sampling import keep_probability, length_biased_keep, remove_lines
from selflen.text.split import SPLIT_STRATEGIES, first_part, keep_leading, split_sentences
from selflen.text.verdict import parse_yes_no

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
    "strip_meta_lines",
    "normalise",
    "parse_yes_no",
    "remove_lines",
    "repeated_ngram",
    "shingles",
    "split_sentences",
]
