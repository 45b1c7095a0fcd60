"""The generate stage driven by a scripted engine: samples per instruction, retries, drops by reason."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from selflen.engines.base import SamplingParams
from selflen.stages import generate
from selflen.stages.common import Chat
from selflen.store import Stage
from selflen.text import FilterRules
from tests.defaults import config, group, with_changes
from tests.scripted import ScriptedEngine

pytestmark = pytest.mark.unit
RULES = FilterRules(end_punct=".!?", ngram_n=10, ngram_tokenizer="whitespace", meta_words=("revised",))
INSTRUCTIONS = [{"id": "k1-i0", "instruction": "Write about tea."}, {"id": "k1-i1", "instruction": "Write about oak."}]


def _settings(**changes: object) -> generate.GenerateSettings:
    base = generate.GenerateSettings(generate=group("generate", samples=2, attempts=1, drop_truncated=True),
                                     rules=RULES, sampling=SamplingParams(max_new_tokens=50),
                                     chat=Chat("Be helpful."), seed=0)
    return with_changes(base, "generate", **changes)


def _stage(tmp_path: Path) -> Stage:
    return Stage(tmp_path / "generate", "iter_1/generate", "h")


def test_samples_retries_and_drop_reasons(tmp_path: Path) -> None:
    script = {
        ("k1-i0", 0): ["Tea is a drink."],
        ("k1-i0", 1): [("Tea grows on", "length"), "Tea has a long history."],
        ("k1-i1", 0): ["Oak trees live long", "Oak wood is hard"],  # no end punctuation, twice
        ("k1-i1", 1): [None, "This revised text is about oak."],  # engine error, then meta text
    }
    calls: dict[tuple[str, int], int] = {}
    by_seed: dict[int, tuple[str, int]] = {}

    def reply(req):
        key = by_seed[req.params.seed]
        n = calls.get(key, 0)
        calls[key] = n + 1
        return script[key][n]

    from selflen.stages.common import seed_for

    for inst in INSTRUCTIONS:
        for j in range(2):
            for attempt in range(2):
                by_seed[seed_for(0, f"{inst['id']}-s{j}", attempt)] = (inst["id"], j)
    engine = ScriptedEngine(reply)
    result = generate.run(_stage(tmp_path), INSTRUCTIONS, _settings(), engine)
    assert result.counts == {"records": 4, "ok": 2, "dropped": 2}
    assert result.drops == {"truncated": 1, "end_punct": 2, "engine_error": 1, "meta_text": 1}
    assert [len(c) for c in engine.calls] == [4, 3]  # all requests of a try at once; only failures retried
    records = {r["id"]: r for r in Stage.read_records(tmp_path / "generate")}
    assert records["k1-i0-s1"]["attempts"] == 2 and records["k1-i0-s1"]["status"] == "ok"
    assert records["k1-i1-s1"]["reason"] == "meta_text"
    assert "k1-i1-s1" not in {r["id"] for r in _stage(tmp_path).records()}  # an engine error in its tries: retried
    assert records["k1-i0-s0"]["words"] == 4 and records["k1-i0-s0"]["chars"] == len("Tea is a drink.")
    assert engine.calls[0][0].messages[0] == {"role": "system", "content": "Be helpful."}
    assert result.metrics["generate/truncated_rate"] == round(1 / 7, 4)


def test_truncated_answers_kept_when_asked_and_resume_skips_done_ids(tmp_path: Path) -> None:
    engine = ScriptedEngine(lambda req: ("An answer that ran out.", "length"))
    generate.run(_stage(tmp_path), INSTRUCTIONS[:1], _settings(drop_truncated=False, samples=1), engine)
    assert _stage(tmp_path).records()[0]["status"] == "ok"
    again = ScriptedEngine(lambda req: "Never asked.")
    result = generate.run(_stage(tmp_path), INSTRUCTIONS, _settings(drop_truncated=False, samples=1), again)
    assert [r.messages[-1]["content"] for r in again.requests] == ["Write about oak."]
    assert result.counts["records"] == 2


def test_an_answer_the_engine_ended_in_a_loop_is_dropped_as_loop_even_when_truncated_ones_are_kept(
        tmp_path: Path) -> None:
    engine = ScriptedEngine(lambda req: ("Tea is good. Tea is good. Tea is good.", "loop"))
    result = generate.run(_stage(tmp_path), INSTRUCTIONS[:1], _settings(drop_truncated=False, samples=1, attempts=0),
                          engine)
    assert result.drops == {"loop": 1} and _stage(tmp_path).records()[0]["reason"] == "loop"


def test_settings_ask_the_engine_to_stop_loops_as_configured() -> None:

    cfg = config()
    assert generate.settings(cfg).sampling.stop_loops is True
    cfg.generate = replace(cfg.generate, stop_loops=False)
    assert generate.settings(cfg).sampling.stop_loops is False
