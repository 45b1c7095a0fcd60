"""The instruct stage driven by a scripted engine: slots, retries, every drop reason, pools, the judge."""

from __future__ import annotations

from pathlib import Path

import pytest

from selflen.engines.base import SamplingParams
from selflen.stages import instruct
from selflen.stages.common import Chat
from selflen.store import Stage
from tests.defaults import group, with_changes
from tests.scripted import ScriptedEngine, user_text

pytestmark = pytest.mark.unit
SEEDS = [f"Write a detailed essay about seed topic number {i} for a general audience." for i in range(4)]


def _settings(**changes: object) -> instruct.InstructSettings:
    base = instruct.InstructSettings(
        instruct=group("instruct", count=3, attempts=3, pool="growing", pool_reset=None, min_words=4, max_words=500,
                       judge=False, judge_temperature=0.7, judge_min_words=2000, dedup_threshold=0.8,
                       decontaminate=False, drop_truncated=True),
        language="en", label="Instruction", counter="longen",
        sampling=SamplingParams(max_new_tokens=64, stop=("---", "\nInstruction")), chat=Chat(), seed=0, iteration=1,
        prompts="",
    )
    return with_changes(base, "instruct", **changes)


def _stage(tmp_path: Path) -> Stage:
    return Stage(tmp_path / "instruct", "iter_1/instruct", "h")


def _unique_writer() -> ScriptedEngine:
    counter = iter(range(10_000))
    return ScriptedEngine(lambda req: f" Write a long report on subject {next(counter)} with history and outlook.")


def test_each_slot_ends_as_one_accepted_record(tmp_path: Path) -> None:
    engine = _unique_writer()
    result = instruct.run(_stage(tmp_path), instruct.InstructInputs(SEEDS), _settings(), engine)
    assert result.counts == {"records": 3, "ok": 3, "dropped": 0}
    records = _stage(tmp_path).records()
    assert [r["id"] for r in records] == ["k1-i0", "k1-i1", "k1-i2"]
    assert len(engine.calls) == 1 and len(engine.calls[0]) == 3  # every slot of a try in one engine call
    req = engine.calls[0][0]
    assert req.prefix.startswith("Instruction 1: ") and req.prefix.endswith("Instruction 3:")
    assert "\nInstruction" in req.params.stop and req.params.seed is not None


def test_drop_reasons_are_counted_and_slots_retried(tmp_path: Path) -> None:
    replies = iter([
        " Too short.", (" Write a long report on apples with many chapters and", "length"), None,  # try 1
        " Write a long report on apples and their history in Europe.",  # try 2: slot 0 accepted
        " write a long report on APPLES and their history in europe.",  # slot 1: exact duplicate
        " Short again.",  # slot 2: word bounds
        " Short.", " Nope.",  # try 3: both fail again -> attempts exhausted
    ])
    engine = ScriptedEngine(lambda req: next(replies))
    result = instruct.run(_stage(tmp_path), instruct.InstructInputs(SEEDS), _settings(), engine)
    assert result.counts == {"records": 3, "ok": 1, "dropped": 2}
    assert result.drops == {"word_bounds": 4, "truncated": 1, "engine_error": 1, "duplicate": 1,
                            "attempts_exhausted": 2}
    ok = [r for r in _stage(tmp_path).records() if r["status"] == "ok"]
    assert ok[0]["id"] == "k1-i0" and ok[0]["attempts"] == 2


def test_a_truncated_instruction_is_kept_when_asked(tmp_path: Path) -> None:
    engine = ScriptedEngine(lambda req: (" Write a long report on cities with maps and", "length"))
    s = _settings(count=1, drop_truncated=False)
    assert instruct.run(_stage(tmp_path), instruct.InstructInputs(SEEDS), s, engine).counts["ok"] == 1


def test_a_further_numbered_example_is_cut_off_even_past_the_budget(tmp_path: Path) -> None:
    """SmolLM2 goes on with "Instructions 4: ..." (plural, which the old stop strings missed) until the budget: the
    instruction before that line is whole, so it is kept without the rest; one cut inside itself is still dropped."""
    replies = iter([
        (" Write a long report on rivers and their history.\nInstructions 4: Write a poem about", "length"),
        (" Write a long report on mountains and their", "length"),
        " Write a long report on lakes and their wildlife.\nInstructions 6: Write a long essay on the sea.",
    ])
    engine = ScriptedEngine(lambda req: next(replies))
    s = _settings(count=3, attempts=1)
    result = instruct.run(_stage(tmp_path), instruct.InstructInputs(SEEDS), s, engine)
    assert result.drops == {"truncated": 1, "attempts_exhausted": 1}
    kept = {r["id"]: r["instruction"] for r in _stage(tmp_path).records() if r["status"] == "ok"}
    assert kept == {"k1-i0": "Write a long report on rivers and their history.",
                    "k1-i2": "Write a long report on lakes and their wildlife."}


def test_judge_is_sampled_and_its_verdicts_are_counted(tmp_path: Path) -> None:
    verdicts = iter(["Yes.", "No", "maybe"])

    def reply(req):
        if "Answer with one word" in user_text(req):
            return next(verdicts)
        return f" Write a long report on topic {req.params.seed} with a full history."

    engine = ScriptedEngine(reply)
    result = instruct.run(_stage(tmp_path), instruct.InstructInputs(SEEDS), _settings(judge=True, attempts=1), engine)
    assert result.counts["ok"] == 1
    assert result.drops == {"judge_no": 1, "judge_unparsed": 1, "attempts_exhausted": 2}
    judge_reqs = [r for r in engine.requests if "Answer with one word" in user_text(r)]
    assert all(r.params.temperature == 0.7 for r in judge_reqs)  # the reference samples its judge
    assert "more than 2000 words" in user_text(judge_reqs[0])


def test_pools_seeds_only_growing_and_reset(tmp_path: Path) -> None:
    engine = _unique_writer()
    s = _settings(count=4, attempts=1)
    instruct.run(_stage(tmp_path / "grow"), instruct.InstructInputs(SEEDS), s, engine)
    accepted = [r["instruction"] for r in Stage.read_records(tmp_path / "grow" / "instruct")]
    # a second, resumed stage with one more slot draws its examples from the seeds plus what was accepted
    engine2 = _unique_writer()
    instruct.run(Stage(tmp_path / "grow" / "instruct", "iter_1/instruct", "h"), instruct.InstructInputs(SEEDS),
                 with_changes(s, "instruct", count=200), engine2)
    prefixes = " ".join(r.prefix for r in engine2.requests)
    assert any(a in prefixes for a in accepted)
    assert len(engine2.requests) == 196  # finished slots are never asked again
    seeds_only = _unique_writer()
    instruct.run(_stage(tmp_path / "seeds"), instruct.InstructInputs(SEEDS),
                 with_changes(s, "instruct", count=200, pool="seeds"), seeds_only)
    for r in seeds_only.requests:
        examples = [line.split(": ", 1)[1] for line in r.prefix.splitlines()[:2]]
        assert all(e in SEEDS for e in examples)
    assert instruct.pool_group(499, 500) != instruct.pool_group(500, 500)
