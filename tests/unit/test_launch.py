"""The launch of a fine-tuning job: its accelerate config, command, environment, log forwarding, lock and checks."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import selflen.launch as launch
from selflen.errors import Interrupted, SelflenError, clear_stop, request_stop
from selflen.launch import (
    LaunchSettings,
    TrainJob,
    _forward,
    accelerate_config,
    check_launchable,
    launch_command,
    run_job,
    trainer_env,
    trainer_lock,
)

pytestmark = pytest.mark.unit


def test_accelerate_config_carries_the_process_count_port_and_deepspeed_file(tmp_path: Path) -> None:
    s = LaunchSettings(name="zero3", num_processes=8, accelerate={"distributed_type": "DEEPSPEED",
                                                                  "deepspeed_config": {"zero3_init_flag": True}},
                       deepspeed={"zero_optimization": {"stage": 3}})
    c = accelerate_config(s, 29600, tmp_path / "ds.json")
    assert c["num_processes"] == 8 and c["main_process_port"] == 29600 and c["num_machines"] == 1
    assert c["deepspeed_config"] == {"zero3_init_flag": True, "deepspeed_config_file": str(tmp_path / "ds.json")}
    assert "mixed_precision" not in c  # DeepSpeed reads its precision from the JSON
    single = accelerate_config(LaunchSettings(accelerate={"distributed_type": "NO"}), 1)
    assert single["distributed_type"] == "NO" and single["mixed_precision"] == "no"


def test_launch_command_runs_the_trainer_module_under_accelerate() -> None:
    cmd = launch_command(Path("/s/a.yaml"), Path("/s/job.json"), python="/venv/python")
    assert cmd == ["/venv/python", "-m", "accelerate.commands.launch", "--config_file", "/s/a.yaml",
                   "-m", "selflen.trainer", "--job", "/s/job.json"]
    direct = launch_command(Path("/s/a.yaml"), Path("/s/job.json"), python="/venv/python", direct=True)
    assert direct == ["/venv/python", "-m", "selflen.trainer", "--job", "/s/job.json"]


def test_trainer_env_shares_the_cores_and_imports_this_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import selflen

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr("selflen.launch._has_cuda", lambda: False)
    env = trainer_env(LaunchSettings(num_processes=2, env={"NCCL_DEBUG": "WARN"}), cpu_count=16)
    assert env["OMP_NUM_THREADS"] == "8" and env["NCCL_DEBUG"] == "WARN"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(Path(selflen.__file__).resolve().parent.parent)
    assert trainer_env(LaunchSettings(num_processes=4), cpu_count=2)["OMP_NUM_THREADS"] == "1"


def test_forward_hands_over_complete_lines_only(tmp_path: Path) -> None:
    path, got = tmp_path / "log.jsonl", []
    assert _forward(path, 0, got.append) == 0  # no file yet
    path.write_text(json.dumps({"loss": 2.0, "step": 1}) + "\n" + '{"loss": 1.')
    offset = _forward(path, 0, got.append)
    assert got == [{"loss": 2.0, "step": 1}]
    with open(path, "a") as fh:
        fh.write('5, "step": 2}\n')
    _forward(path, offset, got.append)
    assert got == [{"loss": 2.0, "step": 1}, {"loss": 1.5, "step": 2}]


def test_trainer_lock_waits_for_an_orphaned_holder_then_names_the_file(tmp_path: Path) -> None:
    lock = tmp_path / "trainer.lock"
    # a process holding the lock, as an orphaned launcher does with the fd it inherited
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"), str(lock)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SelflenError, match="trainer.lock is still held"), trainer_lock(lock, wait_s=0.5):
            pass
    finally:
        holder.kill()
        holder.wait()
    with trainer_lock(lock, wait_s=5) as fd:  # free again once the holder is gone
        with pytest.raises(BlockingIOError):
            other = os.open(lock, os.O_RDWR)
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            finally:
                os.close(other)
        assert os.fstat(fd).st_ino == os.stat(lock).st_ino  # the descriptor handed out holds the lock file


def test_deepspeed_launch_without_deepspeed_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else real(name, *a))
    with pytest.raises(SelflenError, match="pip install deepspeed"):
        check_launchable(LaunchSettings(name="zero3", deepspeed={"zero_optimization": {"stage": 3}}))
    check_launchable(LaunchSettings(name="ddp"))  # nothing to install


def test_train_job_round_trips_through_its_file(tmp_path: Path) -> None:
    job = TrainJob(model_dir="m", data="d.jsonl", out_dir="o", settings={"r": 8}, init_adapter="a", parent_pid=7)
    job.write(tmp_path / "job.json")
    assert TrainJob.read(tmp_path / "job.json") == job


@pytest.mark.parametrize("stop", [True, False])
def test_a_trainer_killed_by_the_runs_own_stop_is_a_stop_not_a_failure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop: bool) -> None:
    # a SIGTERM sent to the run's process group can reach the trainer while it is being spawned (still in the group)
    dies = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"]
    monkeypatch.setattr(launch, "launch_command", lambda *a, **k: dies)
    job = TrainJob(model_dir="m", data="d.jsonl", out_dir=str(tmp_path / "o"), settings={})
    if stop:
        request_stop(15)
    try:
        with pytest.raises(Interrupted if stop else SelflenError) as err:
            run_job(job, tmp_path / "launch", LaunchSettings())
    finally:
        clear_stop()
    if stop:
        assert err.value.exit_code == 143
    else:  # without a stop request the same death is the trainer's failure, and names its log
        assert "the trainer failed (exit -15)" in str(err.value) and "trainer.log" in str(err.value)
