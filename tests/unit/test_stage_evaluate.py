"""The evaluate stage on the benchmark slice, driven by a scripted engine: the evaluation's own decoding and budget
reach the engine, every answer is scored with the benchmark's formulas, answers cut by the budget are kept and
counted, and the stage writes what the reports read (scored.jsonl, summary.json, the scatter)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.benchmarks import load_benchmark, slice_rows
from selflen.stages import evaluate
from selflen.store import Stage, read_jsonl
from tests.defaults import config, group
from tests.scripted import ScriptedEngine

pytestmark = pytest.mark.unit


def _rows() -> list[dict]:
    return slice_rows(load_benchmark("longen"), language=["en"], n_per_cell=1, seed=0)[:4]


def _settings() -> evaluate.EvaluateSettings:
    e = group("evaluate", temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.05)
    return evaluate.EvaluateSettings(evaluate=e, point="1", max_new_tokens=77, seed=3)


def test_scores_lengths_and_budget_cut_answers(tmp_path: Path) -> None:
    replies = iter([("Loop loop loop loop loop loop loop loop loop loop loop loop.", "length"),
                    "A short ended answer.", "Another ended answer here.", "A fourth answer."])
    engine = ScriptedEngine(lambda req: next(replies))
    stage = Stage(tmp_path / "evaluate", "iter_1/evaluate", "h")
    result = evaluate.run(stage, evaluate.EvaluateInputs(_rows()), _settings(), engine)
    params = {(r.params.temperature, r.params.top_p, r.params.top_k, r.params.repetition_penalty,
               r.params.max_new_tokens, r.params.seed) for r in engine.requests}
    assert params == {(0.7, 0.8, 20, 1.05, 77, 3)} and len(engine.calls) == 1
    scored = read_jsonl(stage.dir / "scored.jsonl")
    assert len(scored) == 4 and [r["hit_budget"] for r in scored] == [True, False, False, False]
    assert result.counts == {"rows": 4, "hit_budget": 1}
    summary = json.loads((stage.dir / "summary.json").read_text())
    length = summary["length"]
    assert length["n"] == 4 and length["finish_by_budget_rate"] == 0.25
    rates = [r["repetition"]["repeated_10gram_rate"] for r in scored]
    assert rates[0] > 0.5 and rates[1] == 0
    assert result.metrics["eval/length/finish_by_budget_rate"] == 0.25
    assert Path(result.images["plots/eval_1_scatter"]).stat().st_size > 1000


def test_an_engine_error_is_not_scored_and_the_stage_not_done(tmp_path: Path) -> None:
    from selflen.errors import EngineFailed

    replies = iter(["An answer.", None, "Another answer.", "A fourth answer."])  # None: an engine error
    stage = Stage(tmp_path / "evaluate", "iter_1/evaluate", "h")
    with pytest.raises(EngineFailed, match="iter_1/evaluate: backend scripted failed 1 of its 4 requests"):
        evaluate.run(stage, evaluate.EvaluateInputs(_rows()), _settings(), ScriptedEngine(lambda req: next(replies)))
    assert not (stage.dir / "summary.json").exists() and not (stage.dir / "scored.jsonl").exists()


def test_settings_take_the_budget_from_the_length_group_and_drop_the_split_at_final() -> None:
    cfg = config("length=cpu_long")
    assert evaluate.settings(cfg, 1).max_new_tokens == 2048
    assert evaluate.settings(cfg, 1).self_split is not None and evaluate.settings(cfg, "final").self_split is None
