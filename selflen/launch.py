"""Fine-tuning as a launched job: a finetune stage writes its job (``job.json``) and an accelerate config into
``<stage>/launch/`` and runs ``accelerate launch ... -m selflen.trainer --job job.json`` in a subprocess, so the
trainer's devices are free again when the stage ends, whatever the trainer allocated.

Config group ``launch`` (``selflen/conf/launch/``): ``inprocess`` (the trainer in this process, no launcher),
``single`` (one launched process, the default), ``ddp``, ``fsdp``, ``zero3``, ``zero3_offload``. The ``accelerate``
mapping of an option is written as the accelerate config file; ``num_processes`` is the number of trainer
processes (GPUs, or CPU processes over gloo). ``finetune.batch_size`` is per process: the global batch is
``batch_size x grad_accum x num_processes``, recorded in the stage's settings and so in its hash.

The parent and the trainer talk through files, not signals:

- the trainer appends every log line to ``train_log.jsonl``; the parent forwards each to W&B as it arrives;
- a stop (SIGTERM/SIGINT to the run) makes the parent write ``STOP``; every rank sees it at its next step end (the
  ranks agree through one all-reduce, so they checkpoint together), saves a checkpoint and exits 0; a trainer
  whose parent died (SIGKILL) does the same on its own;
- the parent holds ``trainer.lock`` and hands it to the launcher, so a resumed run waits for an orphaned trainer to
  finish its checkpoint instead of training beside it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from selflen.errors import Interrupted, SelflenError, stop_requested, stop_signal

log = logging.getLogger(__name__)
LAUNCHERS = ("inprocess", "accelerate")
STOP_FILE = "STOP"
LOCK_WAIT_S = 600.0


@dataclass(frozen=True)
class LaunchSettings:
    name: str = "single"
    launcher: str = "accelerate"  # inprocess | accelerate
    num_processes: int = 1
    main_process_port: int = 0  # 0: a free port picked at launch
    accelerate: dict[str, Any] = field(default_factory=dict)  # the accelerate config file's contents
    deepspeed: dict[str, Any] | None = None  # the DeepSpeed JSON (ZeRO options)
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the trainer processes


@dataclass(frozen=True)
class TrainJob:
    """What one trainer run needs; written as ``job.json`` and read by ``python -m selflen.trainer``."""

    model_dir: str
    data: str
    out_dir: str
    settings: dict[str, Any]  # the finetune group (FinetuneConfig) as a dict
    seed: int = 0
    dtype: str = "float32"
    init_adapter: str | None = None
    log_file: str | None = None  # trainer logs, one JSON object per line (rank 0)
    result_file: str | None = None  # the stats of the run (rank 0)
    stop_file: str | None = None  # its existence asks the ranks to checkpoint and stop
    parent_pid: int | None = None  # the ranks stop (with a checkpoint) when this process is gone

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> TrainJob:
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))


def accelerate_config(s: LaunchSettings, port: int, deepspeed_file: Path | None = None) -> dict[str, Any]:
    """The accelerate config file of a launch: the option's mapping plus the process count, the port and, for
    DeepSpeed, the path of the DeepSpeed JSON.

    >>> c = accelerate_config(LaunchSettings(num_processes=2, accelerate={"distributed_type": "MULTI_GPU"}), 29512)
    >>> c["num_processes"], c["main_process_port"], c["distributed_type"], c["num_machines"]
    (2, 29512, 'MULTI_GPU', 1)
    >>> ds = LaunchSettings(accelerate={"distributed_type": "DEEPSPEED", "deepspeed_config": {"zero3_init_flag": 1}})
    >>> accelerate_config(ds, 1, Path("ds.json"))["deepspeed_config"]
    {'zero3_init_flag': 1, 'deepspeed_config_file': 'ds.json'}
    """
    c = {"compute_environment": "LOCAL_MACHINE", "num_machines": 1, "machine_rank": 0, "dynamo_backend": "no",
         "mixed_precision": "no", **s.accelerate, "num_processes": s.num_processes, "main_process_port": port}
    if deepspeed_file is not None:
        c["deepspeed_config"] = {**c.get("deepspeed_config", {}), "deepspeed_config_file": str(deepspeed_file)}
        c.pop("mixed_precision")  # DeepSpeed takes its precision from the JSON (bf16 "auto" = finetune.bf16)
    return c


def check_launchable(s: LaunchSettings) -> None:
    """What the launch needs that pip does not bring with selflen, said before anything starts."""
    import importlib.util

    if s.deepspeed is not None and importlib.util.find_spec("deepspeed") is None:
        raise SelflenError(f"launch={s.name} needs DeepSpeed: `pip install deepspeed` on the GPU machine "
                           "(or use launch=fsdp, which needs nothing more)")


def launch_command(config_file: Path, job_file: Path, python: str = sys.executable,
                   direct: bool = False) -> list[str]:
    """``accelerate launch`` of the trainer module (``python -m`` of the launcher: no console script needed);
    ``direct``: the trainer module alone (one process without a distributed backend: the launcher would only
    cost its start-up).

    >>> launch_command(Path("a.yaml"), Path("job.json"), python="py")[1:5]
    ['-m', 'accelerate.commands.launch', '--config_file', 'a.yaml']
    >>> launch_command(Path("a.yaml"), Path("job.json"), python="py")[-4:]
    ['-m', 'selflen.trainer', '--job', 'job.json']
    >>> launch_command(Path("a.yaml"), Path("job.json"), python="py", direct=True)
    ['py', '-m', 'selflen.trainer', '--job', 'job.json']
    """
    trainer = ["-m", "selflen.trainer", "--job", str(job_file)]
    if direct:
        return [python, *trainer]
    return [python, "-m", "accelerate.commands.launch", "--config_file", str(config_file), *trainer]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def trainer_env(s: LaunchSettings, cpu_count: int | None = None) -> dict[str, str]:
    """The trainer's environment: this one, the package importable as this process imports it, the cores shared
    between CPU trainer processes (two torch processes that each take every core fight), the option's extras."""
    import selflen

    env = dict(os.environ)
    src = str(Path(selflen.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if not os.environ.get("CUDA_VISIBLE_DEVICES") and not _has_cuda():
        env["OMP_NUM_THREADS"] = str(max(1, (cpu_count or os.cpu_count() or 1) // s.num_processes))
    env.update(s.env)
    return env


def _has_cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:  # pragma: no cover - torch is a dependency
        return False


@contextlib.contextmanager
def trainer_lock(path: Path, wait_s: float = LOCK_WAIT_S) -> Iterator[int]:
    """An exclusive lock on ``path`` held while a trainer of this stage runs; yields its fd (passed to the launcher
    so an orphaned trainer keeps holding it). Waits for a previous holder, then says what holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline, said = time.time() + wait_s, False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.time() > deadline:
                    raise SelflenError(
                        f"{path} is still held by a trainer of an earlier run (it outlived its parent); "
                        "wait for it to exit or kill it, then re-run to resume") from None
                if not said:
                    log.info("waiting for an earlier trainer of this stage to save its checkpoint and exit")
                    said = True
                time.sleep(1.0)
        yield fd
    finally:
        os.close(fd)


def run_job(job: TrainJob, workdir: Path, s: LaunchSettings,
            on_log: Callable[[dict[str, float]], None] | None = None) -> dict[str, Any]:
    """Run ``job`` under ``accelerate launch`` in ``workdir`` (``<stage>/launch``); the trainer's stats.

    Raises ``Interrupted`` when the run was asked to stop (a checkpoint is on disk, re-running resumes) and
    ``SelflenError`` naming the trainer's log when it failed."""
    check_launchable(s)
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "trainer.log"
    # the lock first: an orphaned trainer of this stage may still be writing its checkpoint, log and result
    with trainer_lock(workdir / "trainer.lock") as lock_fd, open(out, "ab") as sink:
        files = {k: workdir / name for k, name in
                 (("log_file", "train_log.jsonl"), ("result_file", "result.json"), ("stop_file", STOP_FILE))}
        for path in files.values():
            path.unlink(missing_ok=True)
        job = TrainJob(**{**asdict(job), **{k: str(v) for k, v in files.items()}, "parent_pid": os.getpid()})
        job.write(workdir / "job.json")
        cmd = _write_launch_files(workdir, s)
        log.info("launching the trainer (%s, %d process%s): %s", s.name, s.num_processes,
                 "" if s.num_processes == 1 else "es", " ".join(cmd))
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=trainer_env(s),
                                start_new_session=True, pass_fds=(lock_fd,))
        rc = _supervise(proc, files["log_file"], files["stop_file"], on_log)
    result = json.loads(files["result_file"].read_text()) if files["result_file"].exists() else None
    if rc in (-signal.SIGTERM, -signal.SIGINT) and stop_requested():
        # the run's own stop reached the trainer itself: sent to the run's process group while the trainer was being
        # spawned (before it left the group), it dies by it before any checkpoint; re-running resumes all the same
        raise Interrupted(stop_signal() or -rc)
    if rc != 0 or result is None:
        tail = "\n".join(out.read_text(errors="replace").splitlines()[-15:])
        raise SelflenError(f"the trainer failed (exit {rc}); its log is {out}; fix the cause and re-run to resume "
                           f"from the last checkpoint. Last lines:\n{tail}")
    if result.get("stopped"):  # the run's own signal (the trainer saw only the stop file), else the trainer's
        raise Interrupted(stop_signal() or int(result.get("signum") or 15))
    return result


def _write_launch_files(workdir: Path, s: LaunchSettings) -> list[str]:
    """The accelerate config (and DeepSpeed JSON) of this launch in ``workdir``; the command that runs it."""
    ds_file = None
    if s.deepspeed is not None:
        ds_file = workdir / "deepspeed.json"
        ds_file.write_text(json.dumps(s.deepspeed, indent=1), encoding="utf-8")
    config = accelerate_config(s, s.main_process_port or free_port(), ds_file)
    (workdir / "accelerate.yaml").write_text(json.dumps(config, indent=1), encoding="utf-8")
    direct = s.num_processes == 1 and config.get("distributed_type") == "NO"
    return launch_command(workdir / "accelerate.yaml", workdir / "job.json", direct=direct)


def _supervise(proc: subprocess.Popen, log_file: Path, stop_file: Path,
               on_log: Callable[[dict[str, float]], None] | None) -> int:
    """Wait for the launcher, forwarding the trainer's log lines; turn a stop request into the stop file."""
    offset = 0
    while True:
        rc = proc.poll()
        offset = _forward(log_file, offset, on_log)
        if rc is not None:
            return rc
        if stop_requested() and not stop_file.exists():
            log.info("stop requested: the trainer checkpoints at its next step and exits")
            stop_file.write_text("stop\n")
        try:
            proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
        except BaseException:  # a second signal (or a bug here): stop the trainer at once, its last checkpoint stays
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            raise


def _forward(path: Path, offset: int, on_log: Callable[[dict[str, float]], None] | None) -> int:
    """Hand each complete new line of ``path`` to ``on_log``; the offset after them."""
    if not path.exists():
        return offset
    with open(path, "rb") as fh:
        fh.seek(offset)
        chunk = fh.read()
    end = chunk.rfind(b"\n") + 1
    for line in chunk[:end].splitlines():
        if line.strip() and on_log:
            on_log(json.loads(line))
    return offset + end
