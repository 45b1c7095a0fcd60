"""The research record on a real smoke run (tiny model, CPU, W&B offline): artifacts with their lineage,
per-role trainer metrics, evaluation tables, the final/regression stage, checks switched off on purpose, and a
resumed run that logs no finished stage again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import wandb_offline as wo

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _train(run: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="offline", **(env or {}))
    return subprocess.run([sys.executable, "train.py", "debug=smoke", f"hydra.run.dir={run}", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=900, env=env)


def test_smoke_run_record_and_resume(tmp_path: Path) -> None:
    run, empty = tmp_path / "run", tmp_path / "no_benchmarks"
    empty.mkdir()
    res = _train(run, env={"SELFLEN_DATA_DIR": str(empty)})
    assert res.returncode != 0 and "unset both to use the copy shipped" in res.stderr and not (run / "iter_1").exists()

    args = ("evaluate.enabled=false", "instruct.decontaminate=false", "iterations=one",
            "regression.tasks=[selflen_mini_mc]", "regression.limit=4")
    res = _train(run, *args, env={"SELFLEN_DATA_DIR": str(empty)})
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["checks_off"] == ["evaluate.enabled", "instruct.decontaminate"]
    assert summary["regression"]["selflen_mini_mc"]["acc"]["verdict"] == "unchanged within 2 SE"  # tiny model: 0
    recs = wo.records(run)
    rid = (run / "wandb_id").read_text().strip()
    arts = {a["name"].removesuffix(f"-{rid}"): a for a in wo.artifacts(recs) if a["name"].endswith(f"-{rid}")}
    assert arts["iter_1-sft_data"]["type"] == "dataset" and arts["final-finetune"]["type"] == "model"
    assert arts["iter_1-finetune_gen"]["metadata"]["inputs"] == [f"iter_1-sft_data-{rid}"]
    assert f"final-length_control-{rid}" in arts["final-finetune"]["metadata"]["inputs"]
    assert arts["final-regression"]["type"] == "evaluation"
    keys = {k for row in wo.history(recs) for k in row}
    # the launched trainer's own logs (learning rate, grad norm, throughput), forwarded into the run's W&B run
    assert {"train/gen/learning_rate", "train/gen/grad_norm", "train/gen/loss",
            "train/gen/train_samples_per_second"} <= keys
    assert "regression/selflen_mini_mc/acc/delta" in keys
    assert wo.metrics(recs)["*"] == "iteration"  # the stage axis survives the W&B trainer callback's own "*"

    res = _train(run, *args, env={"SELFLEN_DATA_DIR": str(empty)})  # resume: everything is done
    assert res.returncode == 0, res.stderr[-3000:]
    wo.records(run)  # both logs finished
    last = sorted((run / "wandb").glob("offline-run-*"))[-1]
    again = wo.read(next(last.glob("run-*.wandb")))
    assert not [a for a in wo.artifacts(again) if a["type"] != "run_table"]
    logged = {k for row in wo.history(again) for k in row}
    assert not any(k.startswith(("generate/", "sft_data/", "train/", "regression/", "samples/")) for k in logged)
