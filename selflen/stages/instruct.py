"""Step 0, self-instruct: the base model writes new long-writing instructions from two examples, a yes/no judge
keeps the suitable ones; word bounds, exact/near-duplicate removal and benchmark decontamination are applied.

Each requested instruction is a *slot* with a stable id; a slot gets up to ``attempts`` tries and ends as one
record, accepted (``status: ok``) or dropped with the reasons of its failed tries.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from selflen import prompts
from selflen.decontam import Decontaminator
from selflen.engines.base import Engine, SamplingParams
from selflen.stages.common import Chat, rng_for, seed_for
from selflen.store import Stage
from selflen.text import count_words, dedup_mask, normalise, parse_yes_no

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InstructSettings:
    count: int
    attempts: int
    language: str
    label: str  # "Instruction" / "指令"
    min_words: int
    max_words: int
    judge: bool
    grow_pool: bool
    dedup_threshold: float
    counter: str
    sampling: SamplingParams
    seed: int
    iteration: int


def clean_instruction(text: str, label: str) -> str:
    """Cut a completion at the next numbered example and strip list/label noise.

    >>> clean_instruction(" Write a history of tea.\\nInstruction 4: more", "Instruction")
    'Write a history of tea.'
    """
    cut = text.find(f"\n{label}")
    text = text if cut < 0 else text[:cut]
    return text.strip().strip('"').strip()


def transcript_prefix(examples: Sequence[str], label: str) -> str:
    """The assistant turn that lists two examples and opens a third, for the model to continue."""
    sep = "：" if label == "指令" else ": "
    lines = [f"{label} {i + 1}{sep}{ex.strip()}" for i, ex in enumerate(examples)]
    return "\n".join(lines) + f"\n{label} {len(examples) + 1}{sep.rstrip()}"


def screen(candidate: str, s: InstructSettings, accepted: list[str], decontam: Decontaminator | None) -> str | None:
    """The drop reason of a candidate before judging, or None when it may go to the judge."""
    words = count_words(candidate, s.counter)
    if not candidate:
        return "empty"
    if not (s.min_words <= words < s.max_words):
        return "word_bounds"
    if decontam is not None and decontam.is_contaminated(candidate):
        return "contaminated"
    norm = normalise(candidate)
    if any(normalise(a) == norm for a in accepted):
        return "duplicate"
    if accepted and not dedup_mask([*accepted, candidate], threshold=s.dedup_threshold)[-1]:
        return "near_duplicate"
    return None


def run(
    stage: Stage,
    engine: Engine,
    seeds: Sequence[str],
    s: InstructSettings,
    chat: Chat,
    decontam: Decontaminator | None = None,
) -> dict:
    """Fill ``s.count`` slots; returns counts for ``done.json``."""
    done = stage.records()
    accepted = [r["instruction"] for r in done if r["status"] == "ok"]
    pending = [f"k{s.iteration}-i{slot}" for slot in range(s.count)]
    pending = [sid for sid in pending if not stage.has(sid)]
    drops: dict[str, Counter] = {sid: Counter() for sid in pending}
    params = s.sampling.with_(stop=("\n\n", f"\n{s.label}"))
    judge_params = SamplingParams(temperature=0.0, max_new_tokens=8, repetition_penalty=1.0)
    for attempt in range(s.attempts):
        if not pending:
            break
        pool = [*seeds, *accepted] if s.grow_pool else list(seeds)
        reqs = []
        for sid in pending:
            rng = rng_for(s.seed, sid, attempt)
            examples = rng.sample(pool, 2) if len(pool) >= 2 else list(pool)
            user = prompts.render("self_instruct", s.language)
            reqs.append(
                chat.request(
                    user,
                    params,
                    seed=seed_for(s.seed, sid, attempt, "gen"),
                    prefix=transcript_prefix(examples, s.label),
                )
            )
        outs = engine.generate(reqs, desc=f"instruct try {attempt + 1}")
        candidates: dict[str, str] = {}
        for sid, res in zip(pending, outs, strict=True):
            cand = clean_instruction(res.text, s.label) if res.ok else ""
            reason = "engine_error" if not res.ok else screen(cand, s, [*accepted, *candidates.values()], decontam)
            if reason:
                drops[sid][reason] += 1
            else:
                candidates[sid] = cand
        verdicts = _judge(engine, candidates, s, chat, judge_params) if s.judge else dict.fromkeys(candidates, True)
        for sid, cand in candidates.items():
            verdict = verdicts[sid]
            if verdict is True:
                stage.append(
                    {
                        "id": sid,
                        "status": "ok",
                        "instruction": cand,
                        "attempts": attempt + 1,
                        "drops": dict(drops[sid]),
                    }
                )
                accepted.append(cand)
            else:
                drops[sid]["judge_no" if verdict is False else "judge_unparsed"] += 1
        pending = [sid for sid in pending if not stage.has(sid)]
    for sid in pending:
        stage.append({"id": sid, "status": "dropped", "reason": "attempts_exhausted", "drops": dict(drops[sid])})
    return summarize(stage.records())


def _judge(
    engine: Engine, candidates: dict[str, str], s: InstructSettings, chat: Chat, params: SamplingParams
) -> dict[str, bool | None]:
    if not candidates:
        return {}
    reqs = [
        chat.request(prompts.render("judge", s.language, instruction=c), params, seed=0) for c in candidates.values()
    ]
    outs = engine.generate(reqs, desc="judge")
    return {sid: parse_yes_no(o.text) if o.ok else None for sid, o in zip(candidates, outs, strict=True)}


def summarize(records: list[dict]) -> dict:
    drops: Counter = Counter()
    for r in records:
        drops.update(r.get("drops", {}))
    ok = sum(r["status"] == "ok" for r in records)
    return {"counts": {"requested": len(records), "accepted": ok}, "drops": dict(drops)}
