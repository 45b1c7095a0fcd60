"""Length control for the final SFT: long answers pooled from every iteration (and from the final collection
round) get a length constraint (about / range / above / below, in the answer's language) that their own counted
length satisfies, woven into the query by the base model (checked, with a template fallback) or by the template
alone.

Config group ``length_control``; prompts and phrasings in ``selflen/prompts``; rules in ``selflen.length_constraints``.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from selflen.config import TrainConfig
from selflen.engines.base import Engine, Request, SamplingParams
from selflen.groups import LengthControlConfig
from selflen.length_constraints import accept_rewrite, apply_template, make_constraint, pick_kind, rewrite_prompt
from selflen.stages.common import Chat, StageResult, engine_failure, failed_answers, seed_for, word_stats
from selflen.stages.records import LengthControlExample
from selflen.stages.sft_data import pair
from selflen.store import Stage, write_jsonl

LC_FILE = "lc_sft.jsonl"


@dataclass(frozen=True)
class LengthControlSettings:
    length_control: LengthControlConfig
    min_words: int  # length.pool_min_words: pooled answers have min_words <= words < max_words
    max_words: int  # length.pool_max_words
    max_new_tokens: int  # length.rewrite_tokens
    language: str
    chat: Chat
    seed: int


def settings(cfg: TrainConfig) -> LengthControlSettings:
    n = cfg.length
    return LengthControlSettings(length_control=cfg.length_control, min_words=n.pool_min_words,
                                 max_words=n.pool_max_words, max_new_tokens=n.rewrite_tokens,
                                 language=cfg.language.name, chat=Chat(cfg.model.system_prompt), seed=cfg.seed)


def empty_pool_message(words: Sequence[int], min_words: int, max_words: int) -> str:
    """What to say when no answer of the run falls in the pool's bounds, naming the key to change.

    >>> print(*empty_pool_message([120, 290], 2000, 8000).split("; "), sep="\\n")
    final length-following SFT skipped: no pooled answer has 2000 <= words < 8000 (the longest has 290)
    lower length.pool_min_words
    >>> empty_pool_message([9100], 2000, 8000).endswith("raise length.pool_max_words")
    True
    """
    longest = max(words, default=0)
    key = "length.pool_min_words" if longest < min_words else "length.pool_max_words"
    return (f"final length-following SFT skipped: no pooled answer has {min_words} <= words < {max_words} "
            f"(the longest has {longest}); {'lower' if longest < min_words else 'raise'} {key}")


def pool(records: Sequence[dict], min_words: int, max_words: int) -> list[dict]:
    """Unique (query, answer) pairs whose answers have ``min_words <= words < max_words`` (the reference's bounds).

    >>> recs = [{"query": "q", "answer": a, "words": w} for a, w in (("a", 99), ("b", 100), ("b", 100), ("c", 300))]
    >>> [r["answer"] for r in pool(recs, 100, 300)]  # the duplicate and the upper bound are left out
    ['b']
    """
    seen, out = set(), []
    for r in records:
        key = (r["query"], r["answer"])
        if min_words <= r["words"] < max_words and key not in seen:
            seen.add(key)
            out.append(r)
    return out


def run(stage: Stage, pooled: Sequence[dict], s: LengthControlSettings, engine: Engine | None = None) -> StageResult:
    mix = dict(sorted(s.length_control.mix.items()))  # one draw order whatever the YAML's
    todo = [r for r in pooled if not stage.has(r["id"])]
    items = []
    for r in todo:
        rng = random.Random(seed_for(s.seed, r["id"], "lc"))
        items.append((r, make_constraint(r["words"], pick_kind(rng, mix), s.language, rng)))
    rewritten: list[str | None] = [None] * len(items)
    if s.length_control.rewrite == "llm" and items and engine is not None:
        params = SamplingParams(temperature=0.0, max_new_tokens=s.max_new_tokens, repetition_penalty=1.0)
        reqs = [Request(rewrite_prompt(r["query"], c), params) for r, c in items]
        results = engine.generate(reqs, desc=f"rewrite queries ({len(reqs)})")
        failed, cause = failed_answers(results)
        if failed:  # a template in place of a rewrite the engine failed would differ from a healthy run's
            raise engine_failure(stage.name, engine.name, failed, len(results), cause)
        for i, res in enumerate(results):
            text = res.text.strip()
            rewritten[i] = text if accept_rewrite(text, items[i][1], query=items[i][0]["query"]) else None
    for (r, c), text in zip(items, rewritten, strict=True):
        rec: LengthControlExample = {
            "id": r["id"],
            "status": "ok",
            "reason": None,
            "query": text or apply_template(r["query"], c),
            "original_query": r["query"],
            "answer": r["answer"],
            "words": r["words"],
            "kind": c.kind,
            "constraint": c.text,
            "window": list(c.window()),
            "rewrite": "llm" if text else "template",
            "source": r["source"],
        }
        stage.append(rec)
    records = stage.records()
    write_jsonl(
        stage.dir / LC_FILE, ({"id": r["id"], "messages": pair(s.chat, r["query"], r["answer"])} for r in records)
    )
    kinds = Counter(r["kind"] for r in records)
    how = Counter(r["rewrite"] for r in records)
    return StageResult(
        counts={
            "examples": len(records),
            **{f"kind_{k}": v for k, v in kinds.items()},
            **{f"rewrite_{k}": v for k, v in how.items()},
        },
        metrics=word_stats([r["words"] for r in records], "length_control"),
    )
