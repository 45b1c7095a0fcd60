"""The evaluate stage with the held-out self-instructed split, driven by a scripted engine: one engine call for
both, the training prompt, seeds shared by every point, cut answers kept as measurements."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from evaluation.benchmarks import load_benchmark, slice_rows
from selflen.stages import evaluate, evaluate_self
from selflen.stages.common import Chat
from selflen.store import Stage, read_jsonl
from tests.defaults import group
from tests.scripted import ScriptedEngine, user_text

pytestmark = pytest.mark.unit
SPLIT = [{"id": "k0-i0", "instruction": "Write about tea."}, {"id": "k0-i1", "instruction": "Write about oak."}]
SELF = evaluate_self.SelfSplitSettings(samples=2, chat=Chat("Be helpful."), counter="longen")


def _settings(point: str, split: bool = True) -> evaluate.EvaluateSettings:
    e = group("evaluate", benchmark="longen", languages=["en"], n_per_cell=1, temperature=0.7, top_p=0.8, top_k=20,
              repetition_penalty=1.1)
    return evaluate.EvaluateSettings(evaluate=e, point=point, max_new_tokens=64, seed=5,
                                     self_split=SELF if split else None)


def _reply(req):
    text = user_text(req)
    if text == "Write about oak.":
        return ("Oak. Oak. Oak. Oak. Oak.", "length")
    if text == "Write about tea.":
        return "Tea is a drink from leaves. It is old."
    return "A long answer to the benchmark prompt."


def _rows() -> list[dict]:
    return slice_rows(load_benchmark("longen"), language=["en"], n_per_cell=1, seed=0)[:3]


def test_benchmark_and_split_go_to_the_engine_in_one_call(tmp_path: Path) -> None:
    engine = ScriptedEngine(_reply)
    stage = Stage(tmp_path / "e0", "iter_0/evaluate", "h")
    result = evaluate.run(stage, evaluate.EvaluateInputs(_rows(), SPLIT), _settings("0"), engine)
    assert len(engine.calls) == 1 and len(engine.calls[0]) == 3 + 4  # decoding is step-bound: one wave
    assert [r.messages for r in engine.calls[0][3:5]] == [
        [{"role": "system", "content": "Be helpful."}, {"role": "user", "content": "Write about tea."}]] * 2
    assert engine.calls[0][0].messages[0]["role"] == "user"  # the benchmark's prompt alone, as before
    rows = {r["id"]: r for r in read_jsonl(stage.dir / evaluate_self.ROWS_FILE)}
    assert set(rows) == {"k0-i0-s0", "k0-i0-s1", "k0-i1-s0", "k0-i1-s1"}
    oak = rows["k0-i1-s0"]
    assert oak["finish_reason"] == "length" and oak["words"] == 5 and oak["sample"] == 0 and oak["status"] == "ok"
    assert oak["repetition"]["effective_words"] == 1  # four repeats of "Oak." count once
    assert rows["k0-i0-s1"]["repetition"]["effective_words"] == rows["k0-i0-s1"]["words"] == 9
    assert result.extra["self_instructed"] == {"n": 4, "hit_budget": 2, "mean_words": 7.0}
    assert result.counts == {"rows": 3, "hit_budget": 0}  # the benchmark's own counts are unchanged


def test_every_point_draws_the_same_seeds_for_the_split(tmp_path: Path) -> None:
    seeds = {}
    for point in ("0", "2"):
        engine = ScriptedEngine(_reply)
        stage = Stage(tmp_path / point, f"iter_{point}/evaluate", "h")
        evaluate.run(stage, evaluate.EvaluateInputs(_rows(), SPLIT), _settings(point), engine)
        seeds[point] = [r.params.seed for r in engine.requests[3:]]
    assert seeds["0"] == seeds["2"] and len(set(seeds["0"])) == 4  # pairs across points; distinct per answer


def test_without_a_split_the_stage_answers_the_benchmark_only(tmp_path: Path) -> None:
    engine = ScriptedEngine(_reply)
    stage = Stage(tmp_path / "f", "final/evaluate", "h")
    result = evaluate.run(stage, evaluate.EvaluateInputs(_rows(), SPLIT), _settings("final", split=False), engine)
    assert len(engine.requests) == 3 and "self_instructed" not in result.extra
    assert not (stage.dir / evaluate_self.ROWS_FILE).exists()
    assert replace(_settings("1"), self_split=None) == _settings("1", split=False)
