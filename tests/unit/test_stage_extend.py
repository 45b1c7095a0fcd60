"""The extend stage driven by a scripted engine: two stages per round, best-so-far, tries per round, whole-extension
retries, drops by reason, acceptance ratio, and resuming at the last finished round of the last try."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from selflen.engines.base import SamplingParams
from selflen.integrity import engine_failed
from selflen.stages import extend
from selflen.stages.common import Chat
from selflen.store import Stage
from selflen.text import FilterRules
from tests.defaults import config, group, with_changes
from tests.scripted import ScriptedEngine, user_text

pytestmark = pytest.mark.unit
RULES = FilterRules(end_punct=".!?", ngram_n=0, ngram_tokenizer="whitespace", meta_words=())
ANSWER = "Tea began in China.\n\nIt spread by trade.\n\nToday it is everywhere."
RESPONSES = [{"id": "k1-i0-s0", "instruction_id": "k1-i0", "instruction": "Write about tea.", "response": ANSWER,
              "words": 12}]


def _settings(**changes: object) -> extend.ExtendSettings:
    base = extend.ExtendSettings(
        extend=group("extend", extensions=1, rounds=2, attempts=1, retries=0, min_ratio=1.2, keep_fraction=0.6667,
                     prefix_separator="", strip_meta=False),
        split=group("split", strategy="paragraph_half", ratio=0.5), rules=RULES, language="en",
        sampling=SamplingParams(max_new_tokens=99), chat=Chat(), seed=0, prompts="",
    )
    return with_changes(base, "extend", **changes)


def _stage(tmp_path: Path) -> Stage:
    return Stage(tmp_path / "extend", "iter_1/extend", "h")


def _engine(stage2: list) -> ScriptedEngine:
    """Stage 1 always expands into three paragraphs (two kept); stage 2 replies from ``stage2`` in order."""
    replies = iter(stage2)
    return ScriptedEngine(lambda req: next(replies) if req.prefix else "Part one.\n\nPart two.\n\nConclusion.")


def test_rounds_keep_the_best_and_accept_above_the_ratio(tmp_path: Path) -> None:
    grow = " More about the tea trade and the many cups of tea drunk every day in every land."
    engine = _engine([grow, " Short."])  # round 1 longer; round 2 shorter than the best -> not_longer
    result = extend.run(_stage(tmp_path), RESPONSES, _settings(), engine)
    rec = _stage(tmp_path).records()[0]
    assert rec["status"] == "ok" and rec["rounds_ok"] == 1 and rec["id"] == "k1-i0-s0-e0"
    assert rec["extended"] == ("Part one.\n\nPart two." + grow).strip()  # the kept 2/3 + continuation, verbatim
    assert result.drops == {"not_longer": 1}
    assert [len(c) for c in engine.calls] == [1, 1, 1, 1]  # stage 1 and stage 2 per round
    stage2 = engine.calls[1][0]
    assert stage2.prefix == "Part one.\n\nPart two." and ANSWER in stage2.messages[-1]["content"]
    assert "Tea began in China." in engine.calls[0][0].messages[-1]["content"]
    assert "Today it is everywhere." not in engine.calls[0][0].messages[-1]["content"]  # stage 1: first half only


def test_filters_truncation_errors_and_the_ratio(tmp_path: Path) -> None:
    engine = _engine([(" Cut off in the mid", "length"), None, " no end", " ok."])
    result = extend.run(_stage(tmp_path), RESPONSES, _settings(rounds=2, attempts=2), engine)
    rec = Stage.read_records(tmp_path / "extend")[0]
    # round 2, try 2: "Part one. Part two. ok." has 6 words, not longer than the 12-word original
    assert rec["status"] == "dropped" and rec["reason"] == "ratio" and rec["extended"] == ""
    assert engine_failed(rec)  # a round the engine failed: retried by the next run, never kept as a drop
    assert _stage(tmp_path).records() == []
    assert result.drops == {"truncated": 1, "engine_error": 1, "end_punct": 1, "not_longer": 1, "ratio": 1}
    assert result.counts == {"records": 1, "ok": 0, "dropped": 1}


def test_a_continuation_ended_in_a_loop_counts_as_loop(tmp_path: Path) -> None:
    engine = _engine([(" Again and again and again.", "loop")])
    result = extend.run(_stage(tmp_path), RESPONSES, _settings(rounds=1), engine)
    assert result.drops == {"loop": 1, "ratio": 1}
    cfg = config()
    assert extend.settings(cfg).sampling.stop_loops is True
    cfg.extend = replace(cfg.extend, stop_loops=False)
    assert extend.settings(cfg).sampling.stop_loops is False


def test_extensions_prefix_separator_and_resume_from_saved_round(tmp_path: Path) -> None:
    long = " " + "Many more words about tea and its culture appear here. " * 3
    engine = _engine([long] * 8)
    s = _settings(extensions=2, rounds=2, prefix_separator="\n\n")
    stage = _stage(tmp_path)
    # a killed run left the state after round 1 for extension e1 only
    (stage.dir / extend.STATE_FILE).write_text(json.dumps({"round": 0, "items": {"k1-i0-s0-e1": {
        "best": "Saved best text of round one. " * 5, "best_words": 30, "rounds_ok": 1, "drops": {"end_punct": 1}}}}))
    extend.run(stage, RESPONSES, s, engine)
    assert len(engine.calls) == 2  # only round 2 was run
    assert all(r.prefix.endswith("\n\n") for r in engine.calls[1])
    records = {r["id"]: r for r in _stage(tmp_path).records()}
    assert set(records) == {"k1-i0-s0-e0", "k1-i0-s0-e1"}
    assert records["k1-i0-s0-e1"]["rounds_ok"] == 2 and records["k1-i0-s0-e1"]["drops"] == {"end_punct": 1}
    assert not (stage.dir / extend.STATE_FILE).exists()


def test_strip_meta_keeps_the_body_the_reference_would_drop(tmp_path: Path) -> None:
    rules = FilterRules(end_punct=".!?", ngram_n=0, ngram_tokenizer="whitespace", meta_words=("revised",))
    more = " And tea became a daily habit for millions of people across the whole wide world today."
    for strip, status in ((False, "dropped"), (True, "ok")):
        replies = iter(["Here is the revised text:\n\nPart one.\n\nPart two.\n\nEnd.", more])
        engine = ScriptedEngine(lambda req, r=replies: next(r))
        stage = Stage(tmp_path / f"s{strip}", "iter_1/extend", "h")
        extend.run(stage, RESPONSES, _settings(rounds=1, rules=rules, strip_meta=strip), engine)
        rec = stage.records()[0]
        assert rec["status"] == status, strip
        if strip:
            assert engine.calls[1][0].prefix == "Part one.\n\nPart two."  # the preamble is not continued
            assert "revised" not in rec["extended"]


def test_hold_to_ratio_holds_stage_2_until_the_text_could_pass_the_ratio(tmp_path: Path) -> None:
    long_answer = " ".join(["Tea"] * 49) + " end."  # 50 words
    paragraph = " ".join(["Cups"] * 9) + " drunk."  # 10 words (the scripted engine: one token per word)
    engine = ScriptedEngine(lambda req: " More tea." if req.prefix else "\n\n".join([paragraph] * 3))
    src = [{**RESPONSES[0], "response": long_answer, "words": 50}]
    extend.run(_stage(tmp_path), src, _settings(rounds=1, hold_to_ratio=True), engine)
    stage1, stage2 = engine.calls[0][0], engine.calls[1][0]
    assert stage1.params.min_new_tokens == 0
    assert stage2.prefix == f"{paragraph}\n\n{paragraph}"  # 20 words kept; 1.2 x 50 = 60: 40 tokens to go
    assert stage2.params.min_new_tokens == 40 and stage2.params.max_new_tokens == 99
    engine.calls.clear()
    extend.run(_stage(tmp_path / "off"), src, _settings(rounds=1), engine)
    assert engine.calls[1][0].params.min_new_tokens == 0  # the reference: no hold
    cfg = config()
    assert extend.settings(cfg).extend.hold_to_ratio is False
    cfg.extend = replace(cfg.extend, hold_to_ratio=True)
    assert extend.settings(cfg).extend.hold_to_ratio is True


GROW = " More about the tea trade and the many cups of tea drunk every day in every land."  # 4 kept + 17 words


def test_an_extension_under_the_ratio_starts_over_from_the_original(tmp_path: Path) -> None:
    # try 1: round 1 grows to 13 words (longer, but not > 1.2 x 12), round 2 not longer -> ratio; try 2 grows to 21
    engine = _engine([" More tea is grown and drunk in many lands.", " Tea.", GROW, " Short."])
    result = extend.run(_stage(tmp_path), RESPONSES, _settings(rounds=2, retries=3), engine)
    rec = _stage(tmp_path).records()[0]
    assert rec["status"] == "ok" and rec["tries"] == 2 and rec["rounds_ok"] == 1 and rec["words"] == 21
    assert result.drops == {"not_longer": 2, "ratio": 1}  # the first try's close; the accepted try adds none
    assert result.metrics["extend/mean_tries"] == 2.0
    assert len(engine.calls) == 8  # 2 tries x 2 rounds x 2 stages; no third try once accepted
    first, retry = engine.calls[0][0], engine.calls[4][0]
    assert user_text(engine.calls[2][0]) != user_text(first)  # try 1, round 2 expands try 1's longer text
    assert user_text(retry) == user_text(first)  # the retry starts from the original answer's first half
    assert ANSWER in user_text(engine.calls[5][0])  # and its stage 2 has the original as the outline
    assert first.params.seed != retry.params.seed


def test_retries_run_out_and_the_first_try_keeps_its_seeds(tmp_path: Path) -> None:
    engine = _engine([" Tea."] * 3)
    result = extend.run(_stage(tmp_path), RESPONSES, _settings(rounds=1, retries=2), engine)
    rec = _stage(tmp_path).records()[0]
    assert rec["status"] == "dropped" and rec["reason"] == "ratio" and rec["tries"] == 3
    assert result.drops == {"not_longer": 3, "ratio": 3}  # one ratio drop per whole try
    seeds = [c[0].params.seed for c in engine.calls]
    assert len(set(seeds)) == 6
    plain = _engine([" Tea."])
    extend.run(_stage(tmp_path / "plain"), RESPONSES, _settings(rounds=1), plain)
    assert [c[0].params.seed for c in plain.calls] == seeds[:2]  # retries=0 draws what the first try draws


def test_a_killed_retry_resumes_at_its_try_and_round(tmp_path: Path) -> None:
    stage = _stage(tmp_path)
    # killed after try 1 (round 2 of 2) was closed: the item was started over, with one ratio drop counted
    (stage.dir / extend.STATE_FILE).write_text(json.dumps({"retry": 0, "round": 1, "items": {"k1-i0-s0-e0": {
        "best": ANSWER, "best_words": 12, "rounds_ok": 0, "tries": 2, "drops": {"not_longer": 2, "ratio": 1}}}}))
    engine = _engine([GROW, " Short."])
    result = extend.run(stage, RESPONSES, _settings(rounds=2, retries=1), engine)
    assert len(engine.calls) == 4  # try 2's two rounds only
    rec = stage.records()[0]
    assert rec["status"] == "ok" and rec["tries"] == 2
    assert result.drops == {"not_longer": 3, "ratio": 1}
    cfg = config()
    assert extend.settings(cfg).extend.retries == 0
    cfg.extend = replace(cfg.extend, retries=19)
    assert extend.settings(cfg).extend.retries == 19
