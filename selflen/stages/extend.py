"""Step 2: the Extender lengthens each answer in two stages, for up to R chained rounds.

Stage 1 expands the *first part* of the current text (the split strategy) as a standalone outline and keeps
the leading ``keep_fraction`` of the expansion (dropping its likely conclusion). Stage 2 continues that kept
text as an assistant prefix, conditioned on the *whole* current text as the outline. A round counts only if
the result passes the filters and is longer than the best so far; the item is accepted at the end only if it
is longer than ``min_ratio`` x the original. Items are processed in chunks, round by round, all in batches.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from selflen import prompts
from selflen.engines.base import Engine, SamplingParams
from selflen.stages.common import Chat, chunks, seed_for, word_stats
from selflen.store import Stage
from selflen.text import FilterRules, accept_extension, check_response, count_words, first_part, keep_leading


@dataclass(frozen=True)
class ExtendSettings:
    rounds: int
    attempts: int
    min_ratio: float
    keep_fraction: float
    split: str
    split_ratio: float
    rules: FilterRules
    language: str
    sampling: SamplingParams
    adapter: str | None
    seed: int
    drop_truncated: bool = True
    chunk: int = 16


@dataclass
class _Item:
    id: str
    source: dict
    original: str
    words0: int
    best: str
    best_words: int
    rounds_ok: int = 0
    drops: Counter = field(default_factory=Counter)


def extend_prompt(instruction: str, outline: str, language: str) -> str:
    return prompts.render("extend", language, instruction=instruction, outline=outline)


def combine(kept: str, continuation: str) -> str:
    """Stage-1 kept text followed by the stage-2 continuation (the prefix was continued verbatim).

    >>> combine("Intro.\\n\\n", "More text.")
    'Intro.\\n\\nMore text.'
    """
    return kept + continuation


def run(
    stage: Stage, engine: Engine, responses: Sequence[dict], s: ExtendSettings, chat: Chat, extensions: int = 1
) -> dict:
    todo = [(r, e) for r in responses for e in range(extensions) if not stage.has(f"{r['id']}-e{e}")]
    for part in chunks(todo, s.chunk):
        items = [_Item(f"{r['id']}-e{e}", r, r["response"], r["words"], r["response"], r["words"]) for r, e in part]
        for rnd in range(s.rounds):
            _one_round(engine, items, rnd, s, chat)
        for it in items:
            ok = accept_extension(it.words0, it.best_words, s.min_ratio)
            if not ok:
                it.drops["ratio"] += 1
            stage.append(
                {
                    "id": it.id,
                    "response_id": it.source["id"],
                    "instruction_id": it.source["instruction_id"],
                    "instruction": it.source["instruction"],
                    "response": it.original,
                    "words_before": it.words0,
                    "extended": it.best if ok else "",
                    "words": it.best_words if ok else it.words0,
                    "ratio": round(it.best_words / max(1, it.words0), 4),
                    "rounds_ok": it.rounds_ok,
                    "status": "ok" if ok else "dropped",
                    "reason": None if ok else "ratio",
                    "drops": dict(it.drops),
                }
            )
    return summarize(stage.records())


def _one_round(engine: Engine, items: list[_Item], rnd: int, s: ExtendSettings, chat: Chat) -> None:
    """One round for every item: up to ``attempts`` tries, each a batched stage 1 and a batched stage 2."""
    pending = list(items)
    for attempt in range(s.attempts):
        if not pending:
            return
        params1 = s.sampling
        reqs1 = [
            chat.request(
                extend_prompt(it.source["instruction"], first_part(it.best, s.split, s.split_ratio), s.language),
                params1,
                seed=seed_for(s.seed, it.id, rnd, attempt, 1),
                adapter=s.adapter,
            )
            for it in pending
        ]
        results1 = engine.generate(reqs1, desc=f"extend r{rnd + 1} stage 1")
        kept = [keep_leading(res.text.strip(), s.keep_fraction) if res.ok else "" for res in results1]
        reqs2 = [
            chat.request(
                extend_prompt(it.source["instruction"], it.best, s.language),
                s.sampling,
                seed=seed_for(s.seed, it.id, rnd, attempt, 2),
                adapter=s.adapter,
                prefix=_as_prefix(k),
            )
            for it, k in zip(pending, kept, strict=True)
        ]
        still = []
        for it, k, res in zip(pending, kept, engine.generate(reqs2, desc=f"extend r{rnd + 1} stage 2"), strict=True):
            reason = _round_reason(it, k, res, s)
            if reason is None:
                out = combine(_as_prefix(k) or "", res.text).strip()
                it.best, it.best_words, it.rounds_ok = out, count_words(out, s.rules.counter), it.rounds_ok + 1
            else:
                it.drops[reason] += 1
                still.append(it)
        pending = still


def _as_prefix(kept: str) -> str | None:
    return kept + "\n\n" if kept else None


def _round_reason(it: _Item, kept: str, res, s: ExtendSettings) -> str | None:  # noqa: ANN001
    if not res.ok:
        return "engine_error"
    out = res.outputs[0]
    if out.finish_reason == "length" and s.drop_truncated:
        return "truncated"
    text = combine(_as_prefix(kept) or "", out.text).strip()
    reason = check_response(text, s.rules)
    if reason:
        return reason
    if count_words(text, s.rules.counter) <= it.best_words:
        return "not_longer"
    return None


def summarize(records: list[dict]) -> dict:
    drops: Counter = Counter()
    for r in records:
        drops.update(r.get("drops", {}))
    ok = [r for r in records if r["status"] == "ok"]
    metrics = word_stats([r["words"] for r in ok], "extend")
    metrics["extend/accept_rate"] = round(len(ok) / max(1, len(records)), 4)
    metrics["extend/mean_ratio"] = round(sum(r["ratio"] for r in ok) / max(1, len(ok)), 4)
    return {"counts": {"inputs": len(records), "accepted": len(ok)}, "drops": dict(drops), "metrics": metrics}
