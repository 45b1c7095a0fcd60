"""Step 0, self-instruct: the base model writes new long-writing instructions from two examples; a yes/no judge
keeps the suitable ones; word bounds, exact/near-duplicate removal and benchmark decontamination are applied.

Config group ``instruct`` (+ ``sampling``, ``language``); prompts ``self_instruct_<lang>.md`` and
``judge_<lang>.md``; rules in ``selflen.text`` (``count_words``, ``dedup_mask``, ``parse_yes_no``).

Each requested instruction is a *slot* with a stable id (``k<iter>-i<slot>``); a slot gets up to ``attempts``
tries and ends as one record, accepted (``status: ok``) or dropped with the reasons of its failed tries. The
few-shot pool is the seeds (``pool: seeds``, LLaMA reference) or the seeds plus the instructions accepted so far
(``pool: growing``, Qwen reference), reset to the seeds every ``pool_reset`` slots when set.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

from selflen import prompts
from selflen.config import TrainConfig
from selflen.decontam import Decontaminator
from selflen.engines.base import Engine, SamplingParams
from selflen.groups import InstructConfig
from selflen.stages.common import Chat, StageResult, rng_for, sampling_params, seed_for, summarize
from selflen.stages.records import Drop, Instruction
from selflen.store import Stage, config_hash
from selflen.text import count_words, dedup_mask, normalise, parse_yes_no

EXAMPLES = 2  # seed examples in each self-instruct transcript (the reference's 2)


@dataclass(frozen=True)
class InstructSettings:
    instruct: InstructConfig
    language: str
    label: str  # language.instruction_label: "Instruction" / "指令"
    counter: str  # language.counter
    sampling: SamplingParams  # the sampling group, length.instruct_tokens and the next-example stop strings
    chat: Chat
    seed: int
    iteration: int
    prompts: str  # fingerprint of the prompt templates used


@dataclass
class InstructInputs:
    """The seed instructions and the benchmark set to keep new instructions away from (None: no check)."""

    seeds: list[str]
    decontaminator: Decontaminator | None = None


def settings(cfg: TrainConfig, k: int, count: int | None = None) -> InstructSettings:
    """Iteration ``k``'s settings; ``count`` replaces ``instruct.count`` (the held-out split, the final collection)."""
    c, lang = cfg.instruct, cfg.language
    label = lang.instruction_label
    return InstructSettings(
        instruct=c if count is None else replace(c, count=count),
        language=lang.name,
        label=label,
        counter=lang.counter,
        # the reference's stop strings plus the next numbered example ("\nInstruction 4")
        sampling=sampling_params(cfg, cfg.length.instruct_tokens,
                                 stop=[*cfg.sampling.stop, *next_example_markers(label)]),
        chat=Chat(cfg.model.system_prompt),
        seed=cfg.seed,
        iteration=k,
        prompts=prompt_fingerprint(lang.name),
    )


def prompt_fingerprint(language: str) -> str:
    return config_hash([prompts.load(n, language).template for n in ("self_instruct", "judge")])


def next_example_markers(label: str) -> list[str]:
    """Where the model starts a numbered example after the one it was asked for (stop strings): the transcript lists
    ``EXAMPLES`` and opens the next, so the one after is ``EXAMPLES + 2`` (the reference's "\\nInstruction 4" and
    "\\n指令4"). SmolLM2 often writes the plural ("\\nInstructions 4": half of the 120 accepted instructions of an
    iteration carried one), so a label in Latin letters also gets its plural. A line that merely starts with the
    label ("Instructions must be numbered") is no marker; ``clean_instruction`` also cuts at a later number the stop
    strings cannot list.

    >>> next_example_markers("指令")
    ['\\n指令 4', '\\n指令4']
    >>> next_example_markers("Instruction")[-1]
    '\\nInstructions 4'
    """
    n = EXAMPLES + 2
    markers = [f"\n{label} {n}", f"\n{label}{n}"]
    return [*markers, f"\n{label}s {n}"] if label.isascii() else markers


def _next_example_at(text: str, label: str) -> int:
    """Index of the first line that opens another numbered example (``Instruction 5:``, ``Instructions 4``,
    ``指令6``), or -1."""
    m = re.search(rf"\n[ \t]*{re.escape(label)}s?[ \t]*\d", text)
    return m.start() if m else -1


def clean_instruction(text: str, label: str) -> str:
    """Cut a completion at the next numbered example (any number, singular or plural) and strip list/label noise.

    >>> clean_instruction(" Write a history of tea.\\nInstruction 4: more", "Instruction")
    'Write a history of tea.'
    >>> clean_instruction(" Write a blog post on sleep.\\nInstructions 6: Write a poem.", "Instruction")
    'Write a blog post on sleep.'
    >>> clean_instruction(" Write a lab manual.\\nInstructions for each step must be numbered.", "Instruction")
    'Write a lab manual.\\nInstructions for each step must be numbered.'
    """
    cut = _next_example_at(text, label)
    text = text[:cut] if cut >= 0 else text
    return text.strip().strip('"').strip()


def ends_before_the_budget(text: str, finish_reason: str, label: str) -> bool:
    """Whether a completion holds a whole instruction: it ended by itself, or the budget cut it only after the
    model had moved on to another numbered example (the instruction before that line is complete).

    >>> ends_before_the_budget(" Write a report on tea.\\nInstructions 5: Write a report on", "length", "Instruction")
    True
    >>> ends_before_the_budget(" Write a report on tea and its", "length", "Instruction")
    False
    """
    return finish_reason != "length" or _next_example_at(text, label) >= 0


def transcript_prefix(examples: Sequence[str], label: str) -> str:
    """The assistant turn that lists two examples and opens a third, for the model to continue."""
    sep = "：" if label == "指令" else ": "
    lines = [f"{label} {i + 1}{sep}{ex.strip()}" for i, ex in enumerate(examples)]
    return "\n".join(lines) + f"\n{label} {len(examples) + 1}{sep.rstrip()}"


def pool_group(slot: int, pool_reset: int | None) -> str:
    """Slots that share a growing pool: all of them, or blocks of ``pool_reset`` (the Qwen reference's 500).

    >>> pool_group(7, None), pool_group(7, 5), pool_group(12, 5)
    ('all', '1', '2')
    """
    return "all" if not pool_reset else str(slot // pool_reset)


def screen(candidate: str, s: InstructSettings, accepted: list[str], decontam: Decontaminator | None) -> str | None:
    """The drop reason of a candidate before judging, or None when it may go to the judge."""
    words = count_words(candidate, s.counter)
    if not candidate:
        return Drop.EMPTY
    if not (s.instruct.min_words <= words < s.instruct.max_words):
        return Drop.WORD_BOUNDS
    if decontam is not None and decontam.is_contaminated(candidate):
        return Drop.CONTAMINATED
    if s.instruct.dedup_threshold is None:  # the reference keeps duplicates
        return None
    norm = normalise(candidate)
    if any(normalise(a) == norm for a in accepted):
        return Drop.DUPLICATE
    if accepted and not dedup_mask([*accepted, candidate], threshold=s.instruct.dedup_threshold)[-1]:
        return Drop.NEAR_DUPLICATE
    return None


def run(stage: Stage, inputs: InstructInputs, s: InstructSettings, engine: Engine) -> StageResult:
    """Fill ``s.instruct.count`` slots, one record each."""
    accepted_all = [r["instruction"] for r in stage.records() if r["status"] == "ok"]
    groups: dict[str, list[str]] = {}
    for r in stage.records():
        if r["status"] == "ok":
            groups.setdefault(pool_group(_slot(r["id"]), s.instruct.pool_reset), []).append(r["instruction"])
    pending = [sid for sid in (f"k{s.iteration}-i{slot}" for slot in range(s.instruct.count)) if not stage.has(sid)]
    drops: dict[str, Counter] = {sid: Counter() for sid in pending}
    decontam = inputs.decontaminator if s.instruct.decontaminate else None
    for attempt in range(s.instruct.attempts):
        if not pending:
            break
        reqs = [_request(sid, attempt, s, inputs.seeds, groups) for sid in pending]
        outs = engine.generate(reqs, desc=f"instruct try {attempt + 1} ({len(reqs)})")
        candidates: dict[str, str] = {}
        for sid, res in zip(pending, outs, strict=True):
            cand = clean_instruction(res.text, s.label) if res.ok else ""
            if not res.ok:
                reason = Drop.ENGINE_ERROR
            elif s.instruct.drop_truncated and not ends_before_the_budget(res.text, res.outputs[0].finish_reason,
                                                                         s.label):
                reason = Drop.TRUNCATED  # cut by the token budget: an unfinished instruction
            else:
                reason = screen(cand, s, [*accepted_all, *candidates.values()], decontam)
            if reason:
                drops[sid][reason] += 1
            else:
                candidates[sid] = cand
        verdicts = _judge(engine, candidates, s, attempt) if s.instruct.judge else dict.fromkeys(candidates, True)
        for sid, cand in candidates.items():
            if verdicts[sid] is True:
                rec: Instruction = {
                    "id": sid,
                    "status": "ok",
                    "reason": None,
                    "instruction": cand,
                    "attempts": attempt + 1,
                    "drops": dict(drops[sid]),
                }
                stage.append(rec)
                accepted_all.append(cand)
                groups.setdefault(pool_group(_slot(sid), s.instruct.pool_reset), []).append(cand)
            else:  # None: unparsed; the engine's own failure is no verdict on the instruction
                verdict = verdicts[sid]
                drops[sid][Drop.ENGINE_ERROR if verdict == Drop.ENGINE_ERROR else
                           Drop.JUDGE_NO if verdict is False else Drop.JUDGE_UNPARSED] += 1
        pending = [sid for sid in pending if not stage.has(sid)]
    for sid in pending:
        drops[sid][Drop.ATTEMPTS_EXHAUSTED] += 1
        stage.append(
            {"id": sid, "status": "dropped", "reason": Drop.ATTEMPTS_EXHAUSTED, "instruction": "",
             "drops": dict(drops[sid])}
        )
    return summarize(stage.records(), "instruct")


def _slot(sid: str) -> int:
    return int(sid.rsplit("-i", 1)[1])


def _request(sid: str, attempt: int, s: InstructSettings, seeds: Sequence[str], groups: dict[str, list[str]]):
    grown = groups.get(pool_group(_slot(sid), s.instruct.pool_reset), []) if s.instruct.pool == "growing" else []
    pool = [*seeds, *grown]
    rng = rng_for(s.seed, sid, attempt)
    examples = rng.sample(pool, EXAMPLES) if len(pool) >= EXAMPLES else list(pool)
    return s.chat.request(
        prompts.render("self_instruct", s.language),
        s.sampling,
        seed=seed_for(s.seed, sid, attempt, "gen"),
        prefix=transcript_prefix(examples, s.label),
    )


def _judge(engine: Engine, candidates: dict[str, str], s: InstructSettings, attempt: int
           ) -> dict[str, bool | str | None]:
    """Yes/no per candidate, sampled like every other call of the reference (T = judge_temperature); None when the
    answer is neither, ``Drop.ENGINE_ERROR`` when the engine failed the request."""
    if not candidates:
        return {}
    params = s.sampling.with_(temperature=s.instruct.judge_temperature, max_new_tokens=8, stop=())
    reqs = [
        s.chat.request(
            prompts.render("judge", s.language, instruction=c, min_words=str(s.instruct.judge_min_words)),
            params,
            seed=seed_for(s.seed, sid, attempt, "judge"),
        )
        for sid, c in candidates.items()
    ]
    outs = engine.generate(reqs, desc="judge")
    return {sid: parse_yes_no(o.text, s.instruct.judge_parse) if o.ok else Drop.ENGINE_ERROR
            for sid, o in zip(candidates, outs, strict=True)}
