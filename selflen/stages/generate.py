"""Step 1: the Generator answers each instruction ``n`` times (no length demand); the language's filters drop
answers that end mid-sentence, repeat n-grams or talk about themselves. One record per sample id.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from selflen.engines.base import Engine, Result, SamplingParams
from selflen.stages.common import Chat, seed_for, word_stats
from selflen.store import Stage
from selflen.text import FilterRules, check_response, count_words

TRUNCATED = "truncated"  # finish reason "length": the answer was cut by max_new_tokens


@dataclass(frozen=True)
class GenerateSettings:
    samples: int
    attempts: int  # extra tries for a sample that failed the filters
    rules: FilterRules
    sampling: SamplingParams
    adapter: str | None
    seed: int
    drop_truncated: bool = True
    batch: int = 64  # instructions per write-out chunk


def judge_output(res: Result, rules: FilterRules, drop_truncated: bool = True) -> tuple[str, str | None]:
    """The text of a result and its drop reason (None if it passes)."""
    if not res.ok:
        return "", "engine_error"
    out = res.outputs[0]
    if out.finish_reason == "length" and drop_truncated:
        return out.text.strip(), TRUNCATED
    text = out.text.strip()
    return text, check_response(text, rules)


def run(stage: Stage, engine: Engine, instructions: Sequence[dict], s: GenerateSettings, chat: Chat) -> dict:
    todo = [(inst, j) for inst in instructions for j in range(s.samples) if not stage.has(f"{inst['id']}-s{j}")]
    for start in range(0, len(todo), s.batch):
        chunk = todo[start : start + s.batch]
        pending = {f"{inst['id']}-s{j}": (inst, Counter()) for inst, j in chunk}
        for attempt in range(s.attempts + 1):
            if not pending:
                break
            ids = list(pending)
            reqs = [
                chat.request(
                    pending[i][0]["instruction"], s.sampling, seed=seed_for(s.seed, i, attempt), adapter=s.adapter
                )
                for i in ids
            ]
            for rid, res in zip(ids, engine.generate(reqs, desc=f"generate ({len(reqs)})"), strict=True):
                text, reason = judge_output(res, s.rules, s.drop_truncated)
                inst, drops = pending[rid]
                if reason is None:
                    stage.append(_record(rid, inst, text, res, "ok", None, attempt, drops, s.rules.counter))
                    del pending[rid]
                else:
                    drops[reason] += 1
                    if attempt == s.attempts:
                        stage.append(_record(rid, inst, text, res, "dropped", reason, attempt, drops, s.rules.counter))
    return summarize(stage.records())


def _record(
    rid: str,
    inst: dict,
    text: str,
    res: Result,
    status: str,
    reason: str | None,
    attempt: int,
    drops: Counter,
    counter: str,
) -> dict:
    out = res.outputs[0]
    return {
        "id": rid,
        "instruction_id": inst["id"],
        "instruction": inst["instruction"],
        "response": text,
        "words": count_words(text, counter),
        "tokens": out.tokens,
        "finish_reason": out.finish_reason,
        "status": status,
        "reason": reason,
        "attempts": attempt + 1,
        "drops": dict(drops),
    }


def summarize(records: list[dict]) -> dict:
    drops: Counter = Counter()
    for r in records:
        drops.update(r.get("drops", {}))
    ok = [r for r in records if r["status"] == "ok"]
    metrics = word_stats([r["words"] for r in ok], "generate")
    metrics["generate/repetition_rate"] = round(
        drops.get("repeated_ngram", 0) / max(1, sum(r["attempts"] for r in records)), 4
    )
    metrics["generate/truncated_rate"] = round(
        drops.get(TRUNCATED, 0) / max(1, sum(r["attempts"] for r in records)), 4
    )
    return {"counts": {"samples": len(records), "accepted": len(ok)}, "drops": dict(drops), "metrics": metrics}
