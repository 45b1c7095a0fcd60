"""Multirun end to end: ``python train.py -m model=llama3,qwen2 debug=smoke`` gives two jobs with their own run
dirs naming their models, ``python -m selflen.report.compare --sweep`` reports on them, and the launchers compose.

The tiny random model stands in for both models (``debug=smoke`` keeps ``model.name`` and the chat format), so
the sweep mechanics run on CPU: about a minute per job.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from selflen.cli import register_resolvers
from selflen.config import CONF_DIR
from selflen.report.runs import find_runs
from tests import wandb_offline as wo

pytestmark = [pytest.mark.integration, pytest.mark.data]
ROOT = Path(__file__).resolve().parents[2]
MODELS = {"meta-llama/Meta-Llama-3.1-8B-Instruct": "llama3", "Qwen/Qwen2-7B-Instruct": "chatml"}
FAST = ["debug=smoke", "logger=none", "evaluate.enabled=false", "length_control.enabled=false", "iterations=one",
        "instruct.count=3", "generate.samples=1", "extend.rounds=1"]


def _train(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=timeout)
    assert res.returncode == 0, (res.stdout[-2000:], res.stderr[-4000:])
    return res


def _config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())


@pytest.fixture(scope="module")
def model_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sweep = tmp_path_factory.mktemp("sweep")
    logged = [a for a in FAST if a != "logger=none"]  # W&B offline: the jobs' records are checked below
    _train("-m", "model=llama3,qwen2", *logged, f"hydra.sweep.dir={sweep}")
    return sweep


def test_model_sweep_gives_one_run_dir_per_model(model_sweep: Path) -> None:
    runs = find_runs(model_sweep)
    assert len(runs) == 2 and len({r.name for r in runs}) == 2
    names = set()
    for run in runs:
        cfg, summary = _config(run), json.loads((run / "summary.json").read_text())
        name = cfg["model"]["name"]
        assert summary["model"] == name and cfg["model"]["source"] == "tiny"
        assert cfg["model"]["chat_format"] == MODELS[name]
        overrides = (run / ".hydra" / "overrides.yaml").read_text()
        assert f"model={'llama3' if 'llama' in name.lower() else 'qwen2'}" in overrides
        assert (run / "iter_1" / "sft_data" / "gen_sft.jsonl").exists()
        names.add(name)
    assert names == set(MODELS)
    assert (model_sweep / "multirun.yaml").exists()


def test_compare_the_sweep(model_sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    res = subprocess.run([sys.executable, "-m", "selflen.report.compare", "--sweep", str(model_sweep),
                          "--out", str(out), "--publish"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    text = (out / "report.md").read_text()
    assert "model=llama3" in text and "model=qwen2" in text
    assert all(name in text for name in MODELS)
    assert "| model.chat_format | llama3 | chatml |" in text
    assert (out / "growth.png").stat().st_size > 1000
    assert "W&B report skipped" in res.stderr  # --publish offline: skipped with a note, not an error


@pytest.mark.parametrize("launcher", ["slurm", "local", "ray_jobs", "submitit_local", "submitit_slurm"])
def test_launcher_configs_compose(launcher: str) -> None:
    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    target = cfg.hydra.launcher._target_
    assert target.startswith("hydra_plugins.hydra_" + ("ray" if "ray" in launcher else "submitit"))
    if launcher == "slurm":
        assert cfg.hydra.launcher.gpus_per_node == 1 and cfg.hydra.launcher.timeout_min == 1440
    if launcher == "ray_jobs":
        assert cfg.hydra.launcher.ray.init.include_dashboard is False and cfg.hydra.launcher.ray.init.num_cpus


def test_submitit_local_sweep(tmp_path: Path) -> None:
    """Two jobs, each in its own process through submitit's local executor (``hydra/launcher=local``)."""
    pytest.importorskip("submitit")
    _train("-m", "hydra/launcher=local", "hydra.launcher.cpus_per_task=1", "instruct.count=2,3",
           *[o for o in FAST if not o.startswith("instruct.count")], f"hydra.sweep.dir={tmp_path}", timeout=1200)
    runs = find_runs(tmp_path)
    assert sorted(_config(r)["instruct"]["count"] for r in runs) == [2, 3]
    assert all((r / "summary.json").exists() for r in runs)
    assert any((tmp_path / ".submitit").iterdir())


def test_sweep_jobs_log_artifacts_of_their_own_grouped_by_the_sweep(model_sweep: Path) -> None:
    names: list[str] = []
    for run in find_runs(model_sweep):
        recs = wo.records(run)
        rid = (run / "wandb_id").read_text().strip()
        arts = [a for a in wo.artifacts(recs) if a["type"] != "run_table"]
        assert {a["name"] for a in arts} >= {f"iter_1-sft_data-{rid}", f"iter_1-finetune_gen-{rid}"}
        assert all(a["name"].endswith(f"-{rid}") for a in arts)  # the job's identity is in every name
        lineage = next(a for a in arts if a["name"] == f"iter_1-finetune_gen-{rid}")["metadata"]["inputs"]
        assert lineage == [f"iter_1-sft_data-{rid}"]  # the input this job logged, not another job's
        header = wo.of_type(recs, "run")[0]
        assert header.run_group == model_sweep.name and header.job_type == "loop:smoke"
        names += [a["name"] for a in arts]
    assert len(names) == len(set(names)) and len(names) >= 6  # two jobs x (sft_data, finetune_gen, finetune_ext)
