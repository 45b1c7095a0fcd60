"""SIGTERM on the smoke run: mid-generate and mid-finetune the run stops cleanly (exit 143, one line saying the
last finished stage and how to resume, nothing half-written) and the same command resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.test_pipeline import train

pytestmark = [pytest.mark.integration, pytest.mark.data]


def term_when(proc: subprocess.Popen, ready, timeout: float = 600) -> str:
    """SIGTERM the run's process group the moment ``ready()`` holds; return its output."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if ready():
            os.killpg(proc.pid, signal.SIGTERM)
            out, _ = proc.communicate(timeout=300)
            return out
        if proc.poll() is not None:
            pytest.fail("the run ended before the stop point was reached:\n" + proc.stdout.read()[-3000:])
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail("stop point not reached in time")


def stop_lines(out: str) -> list[str]:
    """The run's own messages (a progress bar cut by the stop may precede one on its line)."""
    return ["selflen:" + part.split("\n", 1)[0] for part in out.split("selflen:")[1:]]


def unique_ids(stage: Path) -> list[str]:
    ids = [json.loads(ln)["id"] for ln in (stage / "records.jsonl").read_text().splitlines()]
    assert len(ids) == len(set(ids)), f"duplicated records in {stage}"
    return ids


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sigterm") / "run"


def started(stage: Path):
    return lambda: (stage / "config_hash").exists() and not (stage / "done.json").exists()


def test_sigterm_mid_generate_stops_cleanly_and_resumes(run_dir: Path) -> None:
    gen = run_dir / "iter_1" / "generate"
    proc = train(run_dir)
    out = term_when(proc, started(gen))
    assert proc.returncode == 143, out[-3000:]
    lines = stop_lines(out)
    assert len(lines) == 1, out[-3000:]
    assert "stopped by SIGTERM during iter_1/generate" in lines[0] and "re-run the same command to resume" in lines[0]
    assert "last finished stage: iter_1/instruct" in lines[0] or "last finished stage: iter_1/generate" in lines[0]
    assert "Traceback" not in out
    assert not (run_dir / "run.lock").exists()  # the lock went with the run
    before = unique_ids(gen) if (gen / "records.jsonl").exists() else []
    proc = train(run_dir)  # the same command resumes: instruct is skipped, generate continues
    out = term_when(proc, lambda: (gen / "done.json").exists())
    assert proc.returncode == 143 and len(stop_lines(out)) == 1, out[-3000:]
    assert "stage iter_1/instruct already done" in out
    after = unique_ids(gen)
    assert after[: len(before)] == before  # kept, then continued


def test_sigterm_mid_finetune_keeps_a_checkpoint_and_resumes(run_dir: Path) -> None:
    ft = run_dir / "iter_1" / "finetune_gen"
    proc = train(run_dir)
    out = term_when(proc, started(ft))
    assert proc.returncode == 143, out[-3000:]
    lines = stop_lines(out)
    assert len(lines) == 1 and "re-run the same command to resume" in lines[0], out[-3000:]
    assert "SIGTERM during iter_1/finetune_gen (last finished stage: iter_1/sft_data" in lines[0]
    assert not (ft / "done.json").exists() and not (ft / "adapter").exists()  # nothing half-written
    proc = train(run_dir)
    out = term_when(proc, lambda: (ft / "done.json").exists())
    assert proc.returncode == 143 and len(stop_lines(out)) == 1, out[-3000:]
    assert (ft / "adapter" / "adapter_config.json").exists()
    assert "stage iter_1/generate already done" in out
