"""Class 3 of issue 33: every stop stops, with the right exit code and signal name.

The OpenAI engine's worker threads may sit in a read of a stalled server for ``backend.timeout_s`` (600 s by
default): a stop request ends the wait within a poll, a second signal at once; ``train.py`` ends within 30 s with
exit 128+signal and one line. A Ctrl-C during a launched fine-tune reports SIGINT, not the stop file's SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from selflen.engines.base import Request, SamplingParams
from selflen.engines.openai import OpenAIEngine
from selflen.errors import Interrupted, clear_stop, install_stop_handlers, request_stop
from tests.reliability.cases import STAGE_STOPS, STOP_CASES
from tests.reliability.faulty_server import FaultyServer

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
NO_DATA = ["evaluate.enabled=false", "instruct.decontaminate=false"]


@pytest.fixture
def stalled():
    srv = FaultyServer("stall").start()
    srv.stall_s = 120.0
    yield srv
    srv.stop()


def _requests(n: int) -> list[Request]:
    return [Request([{"role": "user", "content": f"q{i}"}], SamplingParams(max_new_tokens=8)) for i in range(n)]


@pytest.mark.parametrize("where", ["generate", "adapter load"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_ends_a_wait_on_a_stalled_server(stalled: FaultyServer, sig: int, where: str) -> None:
    engine = OpenAIEngine("m", base_url=stalled.url, concurrency=2, timeout_s=600.0, max_retries=0,
                          load_adapters=where == "adapter load")
    timer = threading.Timer(0.5, request_stop, args=(sig,))
    t0 = time.time()
    timer.start()
    try:
        with pytest.raises(Interrupted) as info:
            if where == "generate":
                engine.generate(_requests(4))
            else:
                engine.add_adapter("gen1", "/nowhere")
        assert time.time() - t0 < 5 and info.value.exit_code == 128 + sig
    finally:
        clear_stop()
        engine.close()


def test_a_second_signal_ends_the_wait_at_once(stalled: FaultyServer) -> None:
    engine = OpenAIEngine("m", base_url=stalled.url, concurrency=2, timeout_s=600.0, max_retries=0)
    restore = install_stop_handlers()

    def twice() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Timer(0.5, twice).start()
    t0 = time.time()
    try:
        with pytest.raises(Interrupted, match="SIGTERM"):
            engine.generate(_requests(4))
        assert time.time() - t0 < 5
    finally:
        restore()
        engine.close()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_train_stops_on_a_signal_while_the_server_stalls(tmp_path: Path, stalled: FaultyServer, sig: int,
                                                        code: int) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    proc = subprocess.Popen([sys.executable, str(REPO / "train.py"), "debug=smoke", "logger=none", "backend=openai",
                             f"backend.base_url={stalled.url}", *NO_DATA, f"hydra.run.dir={tmp_path / 'run'}"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 240
        while stalled.hits == 0 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert stalled.hits > 0, proc.stderr.read() if proc.poll() is not None else "no request in 240 s"
        t0 = time.time()
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=30)  # within 30 s, although every worker sits in a 600 s read
        assert time.time() - t0 < 30
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [ln for ln in err.splitlines() if ln.startswith("selflen:")]
    assert proc.returncode == code, err[-2000:]
    assert len(lines) == 1 and f"stopped by {signal.Signals(sig).name}" in lines[0], err[-2000:]
    assert "Traceback" not in err and not (tmp_path / "run" / "iter_1" / "instruct" / "done.json").exists()


def test_ctrl_c_during_a_launched_finetune_reports_sigint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trainer only sees the stop file and reports the stop it made of it (SIGTERM); the run's own signal wins."""
    from selflen import launch

    trainer = ("import json, sys; job = json.load(open(sys.argv[1])); "
               "json.dump({'stopped': True, 'signum': 15}, open(job['result_file'], 'w'))")
    monkeypatch.setattr(launch, "_write_launch_files",
                        lambda workdir, s: [sys.executable, "-c", trainer, str(workdir / "job.json")])
    job = launch.TrainJob(model_dir="m", data="d", out_dir=str(tmp_path / "adapter"), settings={}, seed=0,
                          dtype="float32")
    request_stop(signal.SIGINT)
    try:
        with pytest.raises(Interrupted) as info:
            launch.run_job(job, tmp_path / "launch", launch.LaunchSettings())
    finally:
        clear_stop()
    assert info.value.exit_code == 130 and "SIGINT" in str(info.value)
    assert json.loads((tmp_path / "launch" / "result.json").read_text())["signum"] == 15


def test_every_stop_case_of_the_table_has_its_test() -> None:
    assert len(STOP_CASES) == 4 + 1 + 2 + 1 + 1 + len(STAGE_STOPS)  # the cases here and in test_stage_stops.py


def test_a_stop_cuts_an_hf_batch_short(tiny_model: Path) -> None:
    """The hf engine stops between batches and, through a stopping criterion, inside one: a long CPU batch does not
    hold a stop until it ends."""
    from selflen.engines import build_engine

    reqs = [Request([{"role": "user", "content": "Hello"}], SamplingParams(max_new_tokens=400, seed=i))
            for i in range(2)]
    with build_engine("hf", str(tiny_model), batch_size=2, max_model_len=1024) as engine:
        engine.generate(reqs[:1])  # warm
        request_stop(signal.SIGTERM)
        try:
            with pytest.raises(Interrupted, match="SIGTERM"):
                engine.generate(reqs)
        finally:
            clear_stop()
        calls = []
        real = engine.model.forward

        def counting(*args, **kwargs):
            calls.append(1)
            return real(*args, **kwargs)

        engine.model.forward = counting
        request_stop(signal.SIGTERM)
        try:
            with pytest.raises(Interrupted):
                engine.generate(reqs)
        finally:
            clear_stop()
            engine.model.forward = real
    assert 1 <= len(calls) <= 2  # cut after the first step, not 400 tokens later
