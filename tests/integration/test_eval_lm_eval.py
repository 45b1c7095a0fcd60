"""lm-eval integration: our long-output tasks run offline through the ``lm_eval`` CLI on the embedded model, and
the base-vs-adapter regression runs on the tiny model with the offline multiple-choice task."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TASKS = REPO / "evaluation" / "lm_eval_tasks"


def _offline_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="disabled")
    env["HF_DATASETS_CACHE"] = str(tmp_path / "datasets_cache")
    return env


def test_lm_eval_cli_runs_selflen_longen_offline(tmp_path: Path) -> None:
    from evaluation.benchmarks import benchmark_file
    from selflen.models import embedded_model_dir

    assert benchmark_file("longen").is_file()  # the packaged copy: never skipped
    lm_eval = shutil.which("lm_eval") or str(Path(sys.executable).parent / "lm_eval")
    try:  # the package ships only the GGUF file; importing it needs `llm`, so locate it without importing
        model = embedded_model_dir()
    except Exception as exc:  # any provisioning failure means "not available here"
        pytest.skip(f"embedded SmolLM2 model not available: {exc}")
    cmd = [
        lm_eval, "--include_path", str(TASKS), "--tasks", "selflen_longen", "--limit", "2",
        "--model", "hf", "--model_args", f"pretrained={model},dtype=float32", "--device", "cpu",
        "--batch_size", "2", "--gen_kwargs", "max_gen_toks=16", "--output_path", str(tmp_path / "out"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=_offline_env(tmp_path), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = list((tmp_path / "out").rglob("results_*.json"))
    assert len(results) == 1
    metrics = json.loads(results[0].read_text())["results"]["selflen_longen"]
    assert 0.0 <= metrics["length_score,none"] <= 1.0
    assert 0.0 < metrics["words,none"] <= 64  # 16 new tokens


def test_regression_base_vs_adapter_on_mini_mc(tiny_model: Path, perturbed_adapter: Path) -> None:
    from evaluation.lm_eval_compare import run_regression

    result = run_regression(tiny_model, perturbed_adapter, tasks=["selflen_mini_mc"], limit=8, batch_size=4)
    assert set(result["base"]["selflen_mini_mc"]) >= {"acc", "acc_norm"}
    assert 0.0 <= result["base"]["selflen_mini_mc"]["acc"] <= 1.0
    assert result["adapter"] is not None and "acc" in result["adapter"]["selflen_mini_mc"]
    delta = result["delta"]["selflen_mini_mc"]["acc"]
    assert delta == pytest.approx(
        result["adapter"]["selflen_mini_mc"]["acc"] - result["base"]["selflen_mini_mc"]["acc"]
    )
    assert json.dumps(result)  # plain data, ready for a report


def test_regress_cli_base_vs_finetuned_on_mini_mc(tiny_model: Path, perturbed_adapter: Path, tmp_path: Path) -> None:
    """``python -m evaluation regress`` on the offline task: the same model twice is unchanged (delta 0), an adapter
    gets a verdict per metric with bootstrap standard errors."""
    from evaluation.__main__ import main

    out = tmp_path / "same.json"
    assert main(["regress", "--model", str(tiny_model), "--finetuned", str(tiny_model), "--tasks",
                 "selflen_mini_mc", "--limit", "8", "--out", str(out)]) == 0
    same = json.loads(out.read_text())["comparison"]["selflen_mini_mc"]["acc"]
    assert same["n"] == 8 and same["delta"] == 0.0 and same["verdict"] == "unchanged within 2 SE"
    assert same["base_se"] >= 0.0
    out = tmp_path / "adapter.json"
    assert main(["regress", "--model", str(tiny_model), "--adapter", str(perturbed_adapter), "--tasks",
                 "selflen_mini_mc", "--limit", "8", "--out", str(out)]) == 0
    acc = json.loads(out.read_text())["comparison"]["selflen_mini_mc"]["acc"]
    assert acc["verdict"].startswith(("unchanged", "changed")) and acc["delta_se"] >= 0.0
