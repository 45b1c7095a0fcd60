"""The records every stage appends to its ``records.jsonl`` (one line each, one stable ``id``), and the named
drop reasons. Each record carries ``status`` (``ok`` | ``dropped``), the final ``reason`` of a dropped record, and
``drops``: how many tries failed for which reason (the final reason included), which ``summarize`` adds up.
"""

from __future__ import annotations

from typing import Literal, TypedDict

from selflen.integrity import ENGINE_ERROR
from selflen.text import REASON_EMPTY, REASON_END_PUNCT, REASON_META_TEXT, REASON_REPEATED_NGRAM, REASON_TOO_SHORT

Status = Literal["ok", "dropped"]


class Drop:
    """Every drop reason a stage can record. Filter reasons come from ``selflen.text`` (``check_response``)."""

    EMPTY = REASON_EMPTY
    TOO_SHORT = REASON_TOO_SHORT
    END_PUNCT = REASON_END_PUNCT
    REPEATED_NGRAM = REASON_REPEATED_NGRAM
    META_TEXT = REASON_META_TEXT
    ENGINE_ERROR = ENGINE_ERROR  # the engine failed a try: a record dropped with it is retried, its stage not done
    TRUNCATED = "truncated"  # finish reason "length": cut by the token budget
    LOOP = "loop"  # finish reason "loop": the engine ended a verbatim loop (``stop_loops``)
    WORD_BOUNDS = "word_bounds"  # an instruction outside [min_words, max_words)
    CONTAMINATED = "contaminated"  # overlaps a benchmark prompt
    DUPLICATE = "duplicate"
    NEAR_DUPLICATE = "near_duplicate"
    JUDGE_NO = "judge_no"
    JUDGE_UNPARSED = "judge_unparsed"
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    NOT_LONGER = "not_longer"  # an extension round that did not beat the best text so far
    RATIO = "ratio"  # an extension whose best text is not > min_ratio x the original
    LENGTH_BIAS = "length_bias"  # dropped by length-biased sampling
    TOO_LONG = "too_long"  # a training example over the length cap


class Record(TypedDict, total=False):
    id: str
    status: Status
    reason: str | None
    drops: dict[str, int]


class Instruction(Record, total=False):
    """``instruct``: one requested instruction slot (``k<iter>-i<slot>``)."""

    instruction: str
    attempts: int


class Response(Record, total=False):
    """``generate``: one answer sample (``<instruction id>-s<j>``)."""

    instruction_id: str
    instruction: str
    response: str
    words: int
    chars: int
    tokens: int
    finish_reason: str
    attempts: int


class Extension(Record, total=False):
    """``extend``: one extension of one answer (``<response id>-e<e>``); ``extended`` is empty when dropped."""

    response_id: str
    instruction_id: str
    instruction: str
    response: str
    words_before: int
    extended: str
    words: int
    chars: int
    ratio: float
    rounds_ok: int
    tries: int  # whole extensions tried (1 + the retries used)


class LengthControlExample(Record, total=False):
    """``length_control``: a pooled long answer with a constrained query."""

    query: str
    original_query: str
    answer: str
    words: int
    kind: str
    constraint: str
    window: list[float]
    rewrite: str
    source: str
