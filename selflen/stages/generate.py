"""Step 1: the Generator answers each instruction ``samples`` times (no length demand); the language's filters
drop answers that end mid-sentence, repeat n-grams or talk about themselves, and an answer cut by the token
budget is dropped. A failed sample is retried up to ``attempts`` more times. One record per sample id
(``<instruction id>-s<j>``).

Config group ``generate`` (+ ``sampling``, ``language``); no prompt (the bare instruction is the user turn);
rules in ``selflen.text.check_response``. Every request of a try is handed to the engine at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from selflen.config import TrainConfig
from selflen.engines.base import Engine, Result, SamplingParams
from selflen.groups import GenerateConfig
from selflen.stages.common import Chat, StageResult, filter_rules, sampling_params, seed_for, summarize
from selflen.stages.records import Drop, Instruction, Response
from selflen.store import Stage
from selflen.text import FilterRules, check_response, count_words


@dataclass(frozen=True)
class GenerateSettings:
    generate: GenerateConfig
    rules: FilterRules  # from the language group
    sampling: SamplingParams  # the sampling group, length.generate_tokens and generate.stop_loops
    chat: Chat
    seed: int


def settings(cfg: TrainConfig) -> GenerateSettings:
    c = cfg.generate
    return GenerateSettings(
        generate=c,
        rules=filter_rules(cfg),
        sampling=sampling_params(cfg, cfg.length.generate_tokens).with_(stop_loops=c.stop_loops),
        chat=Chat(cfg.model.system_prompt),
        seed=cfg.seed,
    )


def judge_output(res: Result, rules: FilterRules, drop_truncated: bool = True) -> tuple[str, str | None]:
    """The text of a result and its drop reason (None if it passes)."""
    if not res.ok:
        return "", Drop.ENGINE_ERROR
    out = res.outputs[0]
    text = out.text.strip()
    if out.finish_reason == "loop":
        return text, Drop.LOOP
    if out.finish_reason == "length" and drop_truncated:
        return text, Drop.TRUNCATED
    return text, check_response(text, rules)


def run(stage: Stage, instructions: Sequence[Instruction], s: GenerateSettings, engine: Engine) -> StageResult:
    pending = {
        f"{inst['id']}-s{j}": (inst, Counter())
        for inst in instructions
        for j in range(s.generate.samples)
        if not stage.has(f"{inst['id']}-s{j}")
    }
    for attempt in range(s.generate.attempts + 1):
        if not pending:
            break
        ids = list(pending)
        reqs = [
            s.chat.request(pending[i][0]["instruction"], s.sampling, seed=seed_for(s.seed, i, attempt)) for i in ids
        ]
        for rid, res in zip(ids, engine.generate(reqs, desc=f"generate try {attempt + 1} ({len(reqs)})"), strict=True):
            text, reason = judge_output(res, s.rules, s.generate.drop_truncated)
            inst, drops = pending[rid]
            if reason is not None:
                drops[reason] += 1
            if reason is None or attempt == s.generate.attempts:
                stage.append(_record(rid, inst, text, res, reason, attempt, drops, s.rules.counter))
                del pending[rid]
    records = stage.records()
    tries = max(1, sum(r["attempts"] for r in records))
    drops = Counter()
    for r in records:
        drops.update(r["drops"])
    return summarize(
        records,
        "generate",
        **{
            "generate/repetition_rate": round(drops[Drop.REPEATED_NGRAM] / tries, 4),
            "generate/truncated_rate": round(drops[Drop.TRUNCATED] / tries, 4),
            "generate/loop_rate": round(drops[Drop.LOOP] / tries, 4),
        },
    )


def _record(
    rid: str, inst: Instruction, text: str, res: Result, reason: str | None, attempt: int, drops: Counter, counter: str
) -> Response:
    out = res.outputs[0]
    return {
        "id": rid,
        "instruction_id": inst["id"],
        "instruction": inst["instruction"],
        "response": text,
        "words": count_words(text, counter),
        "chars": len(text),
        "tokens": out.tokens,
        "finish_reason": out.finish_reason,
        "status": "ok" if reason is None else "dropped",
        "reason": reason,
        "attempts": attempt + 1,
        "drops": dict(drops),
    }
