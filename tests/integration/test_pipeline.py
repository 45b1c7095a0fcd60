"""The whole loop on the tiny model: smoke run contents, kill-and-resume, adapter use across iterations."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from selflen.config import CONF_DIR

pytestmark = [pytest.mark.integration, pytest.mark.data]
ROOT = Path(__file__).resolve().parents[2]
SMOKE = ["debug=smoke", "logger=none", "evaluate.languages=[en]"]
STAGES = ["instruct", "generate", "select_responses", "extend", "select", "sft_data", "finetune_gen", "finetune_ext",
          "evaluate"]


def train(run_dir: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, str(ROOT / "train.py"), *SMOKE, f"hydra.run.dir={run_dir}", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def kill_when(proc: subprocess.Popen, ready, timeout: float = 600) -> None:
    """SIGKILL the run (its whole process group) the moment ``ready()`` holds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if ready():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return
        if proc.poll() is not None:
            pytest.fail("the run ended before the kill point was reached")
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail("kill point not reached in time")


def stage_ids(run_dir: Path) -> dict[str, list[str]]:
    out = {}
    for path in sorted(run_dir.glob("**/records.jsonl")):
        ids = [json.loads(line)["id"] for line in path.read_text().splitlines()]
        out[str(path.parent.relative_to(run_dir))] = ids
    return out


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("smoke") / "run"
    out = finish(train(run_dir))
    assert "words" in out and str(run_dir) in out  # the printed summary
    return run_dir


def test_smoke_run_writes_every_stage(smoke_run: Path) -> None:
    for k in (1, 2):
        for stage in STAGES:
            assert (smoke_run / f"iter_{k}" / stage / "done.json").exists(), f"iter_{k}/{stage}"
        for role in ("gen", "ext"):
            assert (smoke_run / f"iter_{k}" / f"finetune_{role}" / "adapter" / "adapter_config.json").exists()
        assert (smoke_run / f"iter_{k}" / "sft_data" / "gen_sft.jsonl").exists()
    for name in ("collect_instruct", "collect_generate", "collect_select", "length_control", "finetune", "evaluate"):
        assert (smoke_run / "final" / name / "done.json").exists(), name
    assert (smoke_run / "iter_0" / "evaluate" / "done.json").exists()  # the base model, same slice and budget
    assert (smoke_run / "final" / "finetune" / "adapter" / "adapter_config.json").exists()
    summary = json.loads((smoke_run / "summary.json").read_text())
    assert set(summary["iterations"]) == {"1", "2"} and set(summary["eval"]) == {"0", "1", "2", "final"}
    assert summary["growth"]["0"] == 1.0 and "finish_by_budget_rate" in summary["eval"]["2"]
    for plot in summary["plots"]:
        assert (smoke_run / plot).stat().st_size > 1000
    lineage = json.loads((smoke_run / "iter_2" / "finetune_gen" / "done.json").read_text())
    assert lineage["settings"]["init_adapter"] == "iter_1/finetune_gen/adapter"  # the reference's cumulative adapter
    scored = [json.loads(line) for line in (smoke_run / "iter_0" / "evaluate" / "scored.jsonl").open()]
    assert scored and all("hit_budget" in r for r in scored)


def test_smoke_run_has_the_structure_every_backend_shares(smoke_run: Path) -> None:
    """The reference for ``test_loop_backends``: the vllm and openai loops are checked against the same stages,
    counts keys and ``served_by`` (iteration 2 generating and extending with iteration 1's adapters)."""
    from tests.loops import check_served, check_structure

    check_served(check_structure(smoke_run), smoke_run)


def test_second_run_on_a_finished_dir_is_a_no_op(smoke_run: Path) -> None:
    before = {p: p.stat().st_mtime for p in smoke_run.glob("**/done.json")}
    out = finish(train(smoke_run))
    assert "already done" in out
    assert {p: p.stat().st_mtime for p in smoke_run.glob("**/done.json")} == before


def test_killed_mid_extend_and_mid_finetune_resumes_to_the_same_records(smoke_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    extend = run_dir / "iter_1" / "extend"
    proc = train(run_dir)
    kill_when(proc, lambda: (extend / "rounds.json").exists() and not (extend / "done.json").exists())
    assert not (extend / "done.json").exists()
    ft = run_dir / "iter_1" / "finetune_ext"
    proc = train(run_dir)
    kill_when(proc, lambda: (ft / "config_hash").exists() and not (ft / "done.json").exists())
    assert not (ft / "done.json").exists()
    finish(train(run_dir))
    resumed, clean = stage_ids(run_dir), stage_ids(smoke_run)
    assert resumed.keys() == clean.keys()
    for stage, ids in clean.items():
        assert len(resumed[stage]) == len(set(resumed[stage])), f"duplicates in {stage}"
        assert sorted(resumed[stage]) == sorted(ids), stage


def test_a_damaged_finished_run_stops_with_one_line_and_the_printed_redo_recomputes(smoke_run: Path,
                                                                                    tmp_path: Path) -> None:
    """Issue 33: a torn last line in a finished stage is never cut (the stage is not silently one record short), a
    deleted adapter is never replaced by the base model, and the ``redo=`` the line prints really recomputes."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run, run_dir)
    records = run_dir / "iter_1" / "generate" / "records.jsonl"
    original = records.read_bytes()
    records.write_bytes(original[:-5])
    proc = train(run_dir)
    out, _ = proc.communicate(timeout=600)
    errors = [ln for ln in out.splitlines() if ln.startswith("selflen: error:")]
    assert proc.returncode == 1 and len(errors) == 1, out[-3000:]
    assert str(records) in errors[0] and "redo=[iter_1/generate]" in errors[0]
    assert records.read_bytes() == original[:-5] and "Traceback" not in out  # left as it is
    finish(train(run_dir, "redo=[iter_1/generate]"))
    assert records.read_bytes() == original  # recomputed: the same records as the first run
    shutil.rmtree(run_dir / "iter_1" / "finetune_gen" / "adapter")
    proc = train(run_dir)
    out, _ = proc.communicate(timeout=600)
    errors = [ln for ln in out.splitlines() if ln.startswith("selflen: error:")]
    assert proc.returncode == 1 and len(errors) == 1, out[-3000:]
    assert "iter_1/finetune_gen is finished, but its trained folder" in errors[0], errors[0]
    assert "redo=[iter_1/finetune_gen]" in errors[0]


def test_next_iteration_generates_with_the_previous_adapter(tiny_model: Path, perturbed_adapter: Path,
                                                            tmp_path: Path) -> None:
    import shutil

    from hydra import compose, initialize_config_dir

    from selflen.cli import register_resolvers
    from selflen.config import to_config
    from selflen.engines import Request, SamplingParams
    from selflen.stage_runner import Runner
    from selflen.store import RunLayout
    from selflen.tracking import NullLogger

    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        raw = compose("train", overrides=[*SMOKE, f"paths.run_dir={tmp_path}", "paths.root=."])
    runner = Runner(to_config(raw), RunLayout(tmp_path), tiny_model, NullLogger())
    req = [Request([{"role": "user", "content": "Write a report."}], SamplingParams(temperature=0, max_new_tokens=12))]
    base = runner.role_engine("gen", 2).generate(req)[0].text  # nothing trained yet: the base model
    shutil.copytree(perturbed_adapter, tmp_path / "iter_1" / "finetune_gen" / "adapter")
    engine = runner.role_engine("gen", 2)
    assert engine.adapter.endswith("-gen1")  # a name unique to this run
    tuned = engine.generate(req)[0].text
    assert runner.role_engine("gen", 1).generate(req)[0].text == base  # iteration 1 always uses the base model
    runner.engines.close()
    assert base != tuned
