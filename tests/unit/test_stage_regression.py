"""The regression stage around lm-eval (the comparison itself: ``test_lm_eval_compare.py``, on the tiny model:
``tests/integration/test_eval_lm_eval.py``): what it hands lm-eval for each kind of trained folder, what it writes
and reports; lm-eval is stubbed here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selflen.stages import regression
from selflen.store import Stage
from tests.defaults import config

pytestmark = pytest.mark.unit
COMPARISON = {"selflen_mini_mc": {
    "acc": {"base": 0.5, "other": 0.5, "delta": 0.0, "delta_se": 0.1, "verdict": "unchanged (|delta| <= 2 se)"},
    "acc_norm": {"base": 0.4, "other": 0.6, "delta": 0.2, "delta_se": 0.05, "verdict": "changed: up"}}}


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    import evaluation.lm_eval_compare as lm

    seen: list[dict] = []

    def run_regression(base, adapter, tasks, limit, **kw):  # lm-eval's runner
        seen.append({"base": base, "adapter": adapter, "tasks": tasks, "limit": limit, **kw})
        return {"comparison": COMPARISON}

    monkeypatch.setattr(lm, "run_regression", run_regression)
    return seen


def test_an_adapter_is_compared_on_the_base_and_the_result_written(tmp_path: Path, calls: list[dict]) -> None:
    s = regression.settings(config("regression.tasks=[selflen_mini_mc]"))
    stage = Stage(tmp_path / "final/regression", "final/regression", "h")
    result = regression.run(stage, regression.RegressionInputs(tmp_path / "base", tmp_path / "adapter"), s)
    assert calls[0]["adapter"] == tmp_path / "adapter" and calls[0]["finetuned_dir"] is None
    assert calls[0]["tasks"] == ["selflen_mini_mc"] and calls[0]["dtype"] == s.dtype
    assert json.loads((stage.dir / regression.RESULT_FILE).read_text())["comparison"] == COMPARISON
    assert result.counts == {"tasks": 1, "unchanged_metrics": 1}
    assert result.metrics["regression/selflen_mini_mc/acc_norm/delta"] == 0.2


def test_a_full_model_is_compared_as_its_own_folder(tmp_path: Path, calls: list[dict]) -> None:
    s = regression.settings(config("regression.tasks=[selflen_mini_mc]"))
    stage = Stage(tmp_path / "final/regression", "final/regression", "h")
    regression.run(stage, regression.RegressionInputs(tmp_path / "base", tmp_path / "model"), s)
    assert calls[0]["adapter"] is None and calls[0]["finetuned_dir"] == tmp_path / "model"
