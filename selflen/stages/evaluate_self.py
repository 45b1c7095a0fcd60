"""The held-out self-instructed split, answered inside the evaluate stage: a Generator answers instructions of its
own training distribution that no iteration trains on, so the loop can tell *fit* (does the fine-tuned Generator
write as long as its targets, where it was trained?) apart from *transfer* (does that carry over to the
benchmark's prompts?).

The split is ``iter_0/instruct``: the base model self-instructs ``evaluate.self_instructed`` instructions before
the loop, with the instruct stage's own prompts, judge and filters (slot ids ``k0-i<slot>``), and every
iteration's instruct stage keeps its instructions away from them (they join the decontamination index). Each
point (0 = the base model, k = iteration k's Generator) answers them as the generate stage asks (the model's
system prompt and the bare instruction: the training prompt), with the evaluation's decoding and budget and one
seed per (instruction, sample) shared by every point, so the answers pair up across points. The evaluate stage
sends these requests in the same engine call as the benchmark's (decoding on CPU is bound by steps, not by
sequences, so the split costs almost nothing) and writes the rows to ``self_instructed.jsonl``.

Config group ``evaluate`` (``self_instructed``, ``self_samples``, decoding and budget); no prompt of its own; rules in
``evaluation.repetition``. A row cut by the budget is kept: it is a measurement, not a failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evaluation.repetition import effective_length, repeated_ngram_rate
from selflen.config import TrainConfig
from selflen.engines.base import Request, Result, SamplingParams
from selflen.stages.common import Chat, seed_for
from selflen.stages.records import Instruction
from selflen.text import count_words

SPLIT_POINT = 0  # the split is self-instructed at point 0, before the loop: iter_0/instruct
ROWS_FILE = "self_instructed.jsonl"


@dataclass(frozen=True)
class SelfSplitSettings:
    samples: int
    chat: Chat
    counter: str


def settings(cfg: TrainConfig) -> SelfSplitSettings:
    return SelfSplitSettings(samples=cfg.evaluate.self_samples, chat=Chat(cfg.model.system_prompt),
                             counter=cfg.language.counter)


def requests(split: Sequence[Instruction], s: SelfSplitSettings, params: SamplingParams, seed: int
             ) -> tuple[list[tuple[Instruction, int]], list[Request]]:
    """The (instruction, sample) items and their requests: the training prompt, one seed per item that every
    point shares (point k's answer pairs with the base's)."""
    items = [(inst, j) for inst in split for j in range(s.samples)]
    return items, [s.chat.request(inst["instruction"], params, seed=seed_for(seed, "self", inst["id"], j))
                   for inst, j in items]


def rows(items: Sequence[tuple[Instruction, int]], results: Sequence[Result], s: SelfSplitSettings
         ) -> list[dict[str, Any]]:
    """One row per answer: words, finish reason, effective words and repeated 10-gram rate; an engine error is a
    row with ``status: dropped``."""
    out = []
    for (inst, j), res in zip(items, results, strict=True):
        done = res.outputs[0] if res.ok else None
        text = done.text.strip() if done is not None else ""
        out.append({
            "id": f"{inst['id']}-s{j}", "instruction_id": inst["id"], "sample": j, "instruction": inst["instruction"],
            "response": text, "words": count_words(text, s.counter), "tokens": done.tokens if done else 0,
            "finish_reason": done.finish_reason if done else None,
            "repetition": {"effective_words": effective_length(text, lambda t: count_words(t, s.counter)),
                           "repeated_10gram_rate": round(repeated_ngram_rate(text, 10), 4)},
            "status": "ok" if res.ok else "dropped",
        })  # fmt: skip
    return out
