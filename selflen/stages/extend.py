"""Step 2: the Extender lengthens each answer ``extensions`` times, in two stages per round, up to ``rounds``
chained rounds (the reference's ``extend_response``), and starts an extension that ended under the ratio over from
the original answer up to ``retries`` times (the reference's loop of up to 20 ``extend_response`` calls).

Stage 1 expands the *first part* of the current text (the ``split`` group) as a standalone outline and keeps the
leading ``keep_fraction`` of the expansion (dropping its likely conclusion). Stage 2 continues that kept text
verbatim as an assistant prefix, conditioned on the *whole* current text as the outline. A round counts only if
the result passes the filters and is longer than the best so far; an extension is accepted at the end only if it
is strictly longer than ``min_ratio`` x the original; one that is not counts a ``ratio`` drop and, while retries
are left, is tried again from the original answer with fresh seeds.

Config groups ``extend`` + ``split`` (+ ``sampling``, ``language``); prompt ``extend_<lang>.md``; rules in
``selflen.text`` (``first_part``, ``keep_leading``, ``check_response``, ``accept_extension``). Every request of a
round is handed to the engine at once; the state after each round is saved (``rounds.json``), so a killed stage
resumes at its last finished round of its last try, and the stage's generation journal answers the requests of
the round it was in that the engine had finished (``selflen.engines.journal``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from selflen import prompts
from selflen.config import TrainConfig
from selflen.engines.base import Engine, Result, SamplingParams
from selflen.groups import ExtendConfig
from selflen.stages.common import Chat, StageResult, filter_rules, sampling_params, seed_for, summarize
from selflen.stages.records import Drop, Extension, Response
from selflen.store import Stage, StoreError, config_hash, read_json, write_json
from selflen.text import (
    FilterRules,
    accept_extension,
    check_response,
    count_words,
    first_part,
    keep_leading,
    strip_meta_lines,
)

if TYPE_CHECKING:
    from selflen.config import SplitConfig

STATE_FILE = "rounds.json"


@dataclass(frozen=True)
class ExtendSettings:
    extend: ExtendConfig
    split: SplitConfig
    rules: FilterRules  # from the language group
    language: str
    sampling: SamplingParams  # the sampling group, length.extend_tokens and extend.stop_loops
    chat: Chat
    seed: int
    prompts: str  # fingerprint of the extend prompt template


def settings(cfg: TrainConfig) -> ExtendSettings:
    c = cfg.extend
    return ExtendSettings(
        extend=c,
        split=cfg.split,
        rules=filter_rules(cfg),
        language=cfg.language.name,
        sampling=sampling_params(cfg, cfg.length.extend_tokens).with_(stop_loops=c.stop_loops),
        chat=Chat(cfg.model.system_prompt),
        seed=cfg.seed,
        prompts=config_hash(prompts.load("extend", cfg.language.name).template),
    )


@dataclass
class _Item:
    id: str
    source: dict
    best: str
    best_words: int
    rounds_ok: int = 0
    tries: int = 1
    drops: Counter = field(default_factory=Counter)

    def restart(self) -> None:
        """Start the extension over from the original answer (a whole-extension retry)."""
        self.best, self.best_words, self.rounds_ok = self.source["response"], self.source["words"], 0
        self.tries += 1


def extend_prompt(instruction: str, outline: str, language: str) -> str:
    return prompts.render("extend", language, instruction=instruction, outline=outline)


def prefix_for(kept: str, separator: str) -> str | None:
    """The assistant prefix of stage 2: the kept stage-1 text (None when stage 1 kept nothing).

    >>> prefix_for("Intro.", ""), prefix_for("Intro.", "\\n\\n"), prefix_for("", "")
    ('Intro.', 'Intro.\\n\\n', None)
    """
    return kept + separator if kept else None


def hold_tokens(target_words: float, prefix_words: int, stage1_tokens: int, stage1_words: int, budget: int) -> int:
    """Stage 2's ``min_new_tokens`` under ``hold_to_ratio``: the tokens its continuation needs to bring the prefix
    up to ``target_words``, at the tokens per word of this item's own stage-1 text (so the tokenizer and the
    language's word count calibrate themselves); at most 3/4 of the budget, so the text can still end; 0 (no hold)
    when stage 1 wrote under 20 words to calibrate on.

    >>> hold_tokens(480, 200, 260, 200, 1536)  # 280 words to go at 1.3 tokens a word
    364
    >>> hold_tokens(480, 500, 260, 200, 1536), hold_tokens(480, 0, 260, 200, 400), hold_tokens(480, 0, 10, 8, 1536)
    (0, 300, 0)
    """
    if stage1_words < 20:
        return 0
    need = math.ceil((target_words - prefix_words) * stage1_tokens / stage1_words)
    return max(0, min(need, budget * 3 // 4))


def run(stage: Stage, responses: Sequence[Response], s: ExtendSettings, engine: Engine) -> StageResult:
    todo = [(r, e) for r in responses for e in range(s.extend.extensions) if not stage.has(f"{r['id']}-e{e}")]
    items = [_Item(f"{r['id']}-e{e}", r, r["response"], r["words"]) for r, e in todo]
    first_try, first_round = _restore(stage, items, s.extend.rounds)
    for t in range(first_try, s.extend.retries + 1):
        trying = [it for it in items if it.tries == t + 1]  # started over, or never closed by the ratio
        if not trying:
            break
        for rnd in range(first_round if t == first_try else 0, s.extend.rounds):
            _one_round(engine, trying, rnd, s, t)
            if rnd == s.extend.rounds - 1:
                _close_try(trying, s, last=t == s.extend.retries)
            _save(stage, items, t, rnd)
    for it in items:
        stage.append(_record(it, s))
    (stage.dir / STATE_FILE).unlink(missing_ok=True)
    records = stage.records()
    ok = [r for r in records if r["status"] == "ok"]
    return summarize(
        records,
        "extend",
        **{
            "extend/accept_rate": round(len(ok) / max(1, len(records)), 4),
            "extend/mean_ratio": round(sum(r["ratio"] for r in ok) / max(1, len(ok)), 4),
            "extend/mean_tries": round(sum(r.get("tries", 1) for r in records) / max(1, len(records)), 4),
        },
    )


def _close_try(items: Sequence[_Item], s: ExtendSettings, last: bool) -> None:
    """End one whole try: an extension under the ratio counts a ``ratio`` drop and, unless it was the last try,
    starts over from the original answer."""
    for it in items:
        if not accept_extension(it.source["words"], it.best_words, s.extend.min_ratio):
            it.drops[Drop.RATIO] += 1
            if not last:
                it.restart()


def _record(it: _Item, s: ExtendSettings) -> Extension:
    src = it.source
    ok = accept_extension(src["words"], it.best_words, s.extend.min_ratio)
    return {
        "id": it.id,
        "response_id": src["id"],
        "instruction_id": src["instruction_id"],
        "instruction": src["instruction"],
        "response": src["response"],
        "words_before": src["words"],
        "extended": it.best if ok else "",
        "words": it.best_words if ok else src["words"],
        "chars": len(it.best) if ok else len(src["response"]),
        "ratio": round(it.best_words / max(1, src["words"]), 4),
        "rounds_ok": it.rounds_ok,
        "tries": it.tries,
        "status": "ok" if ok else "dropped",
        "reason": None if ok else Drop.RATIO,
        "drops": dict(it.drops),
    }


def _one_round(engine: Engine, items: list[_Item], rnd: int, s: ExtendSettings, retry: int) -> None:
    """One round for every item: up to ``attempts`` tries, each a batched stage 1 and a batched stage 2; a retry
    (``retry`` > 0, a whole extension started over) draws its own seeds."""
    pending = list(items)
    for attempt in range(s.extend.attempts):
        if not pending:
            return
        reqs1 = [
            s.chat.request(
                extend_prompt(it.source["instruction"], first_part(it.best, s.split.strategy, s.split.ratio),
                              s.language),
                s.sampling,
                seed=seed_for(s.seed, it.id, rnd, attempt, 1, *_retry_part(retry)),
            )
            for it in pending
        ]
        results1 = engine.generate(reqs1, desc=f"extend {_label(rnd, retry)} stage 1 ({len(reqs1)})")
        kept = [keep_leading(_clean(res.text, s), s.extend.keep_fraction, s.extend.keep_rule) if res.ok else ""
                for res in results1]
        reqs2 = [
            s.chat.request(
                extend_prompt(it.source["instruction"], it.best, s.language),
                _stage2_sampling(it, k, res, s),
                seed=seed_for(s.seed, it.id, rnd, attempt, 2, *_retry_part(retry)),
                prefix=prefix_for(k, s.extend.prefix_separator),
            )
            for it, k, res in zip(pending, kept, results1, strict=True)
        ]
        still = []
        results2 = engine.generate(reqs2, desc=f"extend {_label(rnd, retry)} stage 2 ({len(reqs2)})")
        for it, k, res in zip(pending, kept, results2, strict=True):
            text, reason = round_outcome(it.best_words, prefix_for(k, s.extend.prefix_separator) or "", res, s)
            if reason is None:
                it.best, it.best_words, it.rounds_ok = text, count_words(text, s.rules.counter), it.rounds_ok + 1
            else:
                it.drops[reason] += 1
                still.append(it)
        pending = still


def _retry_part(retry: int) -> tuple[int, ...]:
    """The seed part of a whole-extension retry: none for the first try, so its seeds are the ones without retries."""
    return (retry,) if retry else ()


def _label(rnd: int, retry: int) -> str:
    return f"r{rnd + 1}" + (f" retry {retry}" if retry else "")


def _stage2_sampling(it: _Item, kept: str, stage1: Result, s: ExtendSettings) -> SamplingParams:
    """Stage 2's decoding: the stage's, plus (``hold_to_ratio``) an EOS held until min_ratio x the current text."""
    if not s.extend.hold_to_ratio or not stage1.ok:
        return s.sampling
    out = stage1.outputs[0]
    hold = hold_tokens(s.extend.min_ratio * it.best_words, count_words(kept, s.rules.counter), out.tokens,
                       count_words(out.text, s.rules.counter), s.sampling.max_new_tokens)
    return s.sampling.with_(min_new_tokens=hold)


def round_outcome(best_words: int, prefix: str, res: Result, s: ExtendSettings) -> tuple[str, str | None]:
    """The text of one stage-2 result (prefix + continuation) and why it does not count (None if it does)."""
    if not res.ok:
        return "", Drop.ENGINE_ERROR
    out = res.outputs[0]
    text = _clean(prefix + out.text, s)
    if out.finish_reason == "loop":
        return text, Drop.LOOP
    if out.finish_reason == "length" and s.extend.drop_truncated:
        return text, Drop.TRUNCATED
    reason = check_response(text, s.rules)
    if reason:
        return text, reason
    if count_words(text, s.rules.counter) <= best_words:
        return text, Drop.NOT_LONGER
    return text, None


def _clean(text: str, s: ExtendSettings) -> str:
    text = text.strip()
    return strip_meta_lines(text, s.rules.meta_words) if s.extend.strip_meta else text


def _save(stage: Stage, items: list[_Item], retry: int, rnd: int) -> None:
    state = {
        "retry": retry,
        "round": rnd,
        "items": {
            it.id: {"best": it.best, "best_words": it.best_words, "rounds_ok": it.rounds_ok, "tries": it.tries,
                    "drops": dict(it.drops)}
            for it in items
        },
    }
    write_json(stage.dir / STATE_FILE, state)


def _restore(stage: Stage, items: list[_Item], rounds: int) -> tuple[int, int]:
    """Load the per-item state of the last finished round of a killed run; the (retry, round) to start from."""
    path = stage.dir / STATE_FILE
    state = read_json(path, fix=f"delete it (the unfinished extensions start their rounds again; the records kept "
                                f"stay) or re-run with redo=[{stage.name}] to recompute the stage")
    if not state:
        return 0, 0
    if not isinstance(state, dict) or not isinstance(state.get("items"), dict) or "round" not in state:
        raise StoreError(f"{path} is not an extend round state (no items/round); delete it (the unfinished "
                         f"extensions start their rounds again) or re-run with redo=[{stage.name}]")
    saved = state["items"]
    for it in items:
        if it.id in saved:
            got = saved[it.id]
            it.best, it.best_words, it.rounds_ok = got["best"], got["best_words"], got["rounds_ok"]
            it.tries = int(got.get("tries", 1))
            it.drops = Counter(got["drops"])
    retry, rnd = int(state.get("retry", 0)), int(state["round"]) + 1
    return (retry + 1, 0) if rnd == rounds else (retry, rnd)
