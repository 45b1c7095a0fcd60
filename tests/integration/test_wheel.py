"""selflen as a user installs it: a wheel built from this tree, installed into a fresh virtual environment, runs a
smoke loop from another directory with evaluation and decontamination on, reading the benchmark files shipped in
the package: no ``../shared``, no ``SELFLEN_DATA_DIR``, no network (offline by default)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, (cmd, res.stdout[-3000:], res.stderr[-3000:])
    return res


def test_an_installed_wheel_runs_the_loop_from_elsewhere_on_its_packaged_data(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SELFLEN_", "PYTHON"))}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="offline", OMP_WAIT_POLICY="PASSIVE")
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(ROOT)],
         tmp_path, env)
    wheel = next(dist.glob("selflen-*.whl"))
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, env)
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], tmp_path, env)
    # the dependencies (torch, transformers, ...) come from this interpreter's site-packages, after the venv's own:
    # its editable selflen (a .pth finder there) is not processed, so only the wheel's selflen can be imported
    ask = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.check_output([str(python), "-c", ask], text=True).strip())
    (site / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run([str(python), "-c", "import selflen, selflen.benchmark_files as d; print(selflen.__file__); "
                  "print(d.resolve_data_dir())"], elsewhere, env).stdout.split()
    assert all(str(site) in line for line in where), where  # the wheel's package and its benchmark copy
    assert Path(where[1], "longen", "LonGen.jsonl").is_file() and Path(where[1], "NOTICE").is_file()

    run = tmp_path / "run"
    res = _run([str(venv / "bin" / "selflen-train"), "debug=smoke", "iterations=one", "length_control.enabled=false",
                "logger=none", "instruct.count=3", "generate.samples=1", "extend.rounds=1",
                f"hydra.run.dir={run}"], elsewhere, env)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["checks_off"] == []  # evaluation and decontamination both ran
    assert set(summary["eval"]) == {"0", "1"} and summary["eval"]["1"]["n"] == 12
    assert json.loads((run / "config.json").read_text())["paths"]["data_dir"].startswith(str(site))
    assert "held-out length (12 benchmark prompts" in res.stdout and "summary: " in res.stdout
    assert not (ROOT.parent / "shared").exists() or str(ROOT.parent / "shared") not in res.stdout + res.stderr
