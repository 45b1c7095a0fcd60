"""A non-editable install (the wheel) carries the Hydra configs and experiments: `selflen-train` works from any
directory, with nothing of the checkout on the path."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_wheel_ships_the_config_and_runs_from_anywhere(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT),
                    "-w", str(wheels)], check=True, capture_output=True, timeout=600)
    wheel = next(wheels.glob("selflen-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"selflen/conf/train.yaml", "selflen/conf/extend/default.yaml",
            "selflen/conf/experiment/cpu_lengthen.yaml"} <= names
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import sys, selflen; print(selflen.__file__); sys.argv = ['selflen-train', '--cfg', 'job', "
            "'debug=smoke', '+experiment=rank_by_words']; from selflen.cli import main; main()")
    res = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True, timeout=300,
                         env={**_env(), "PYTHONPATH": str(site)})
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.splitlines()[0].startswith(str(site))  # the installed copy, not the checkout
    assert "length_unit: words" in res.stdout and "min_ratio: 1.2" in res.stdout


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
