"""Run store: crash-safe appends, torn-line recovery, locks, done markers and config hashes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from selflen.locks import RunLock
from selflen.store import Stage, StoreError, config_hash, read_jsonl
from tests.defaults import config

pytestmark = pytest.mark.unit

WRITER = """
import sys
from selflen.store import Stage
st = Stage(sys.argv[1], "crash", "h1")
i = len(st.records())
while True:
    st.append({"id": f"r{i}", "payload": "x" * 200_000})
    i += 1
"""


def test_append_and_read_back(tmp_path: Path) -> None:
    st = Stage(tmp_path / "s", "s", "h")
    st.append({"id": "a", "v": 1})
    st.append({"id": "b", "v": "ü"})
    assert [r["id"] for r in st.records()] == ["a", "b"] and st.has("a")
    with pytest.raises(StoreError, match="duplicate record id a"):
        st.append({"id": "a"})


def test_torn_last_line_is_dropped_and_cut(tmp_path: Path) -> None:
    path = tmp_path / "s" / "records.jsonl"
    path.parent.mkdir()
    path.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c", "v": "tor')
    assert [r["id"] for r in read_jsonl(path)] == ["a", "b"]
    st = Stage(tmp_path / "s", "s", "h")  # opening a stage repairs the file
    assert path.read_text().endswith('{"id": "b"}\n')
    st.append({"id": "c"})
    assert [r["id"] for r in st.records()] == ["a", "b", "c"]


def test_writer_killed_mid_append_leaves_a_readable_store(tmp_path: Path) -> None:
    target = tmp_path / "stage"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)])
    deadline = time.time() + 60
    while time.time() < deadline and (
        not (target / "records.jsonl").exists() or (target / "records.jsonl").stat().st_size < 3_000_000
    ):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    raw = (target / "records.jsonl").read_bytes()
    complete = raw.count(b"\n")
    st = Stage(target, "crash", "h1")
    ids = [r["id"] for r in st.records()]
    assert ids == [f"r{i}" for i in range(complete)]  # every complete line, in order, nothing torn
    assert all(len(r["payload"]) == 200_000 for r in st.records())
    st.append({"id": f"r{complete}", "payload": ""})  # the next run continues where it stopped
    assert len(st.records()) == complete + 1


def test_done_and_config_hash(tmp_path: Path) -> None:
    st = Stage(tmp_path / "s", "s", config_hash({"a": 1}))
    st.append({"id": "x"})
    manifest = st.finish({"n": 1}, {"bad": 2})
    assert manifest["counts"] == {"n": 1} and manifest["drops"] == {"bad": 2}
    assert {"versions", "git_commit", "seconds", "config_hash"} <= set(json.loads((st.dir / "done.json").read_text()))
    assert Stage(tmp_path / "s", "s", config_hash({"a": 1})).done
    with pytest.raises(StoreError, match=r"redo=\[s\]"):
        Stage(tmp_path / "s", "s", config_hash({"a": 2}))
    redone = Stage(tmp_path / "s", "s", config_hash({"a": 2}), redo=True)
    assert not redone.done and redone.records() == []


def test_second_run_is_refused_naming_the_holder(tmp_path: Path) -> None:
    with RunLock(tmp_path), pytest.raises(StoreError, match=f"in use by pid {os.getpid()}"):
        RunLock(tmp_path).acquire()
    with RunLock(tmp_path):  # released: usable again
        pass


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    import socket

    (tmp_path / "run.lock").write_text(json.dumps({"pid": proc.pid, "host": socket.gethostname()}))
    with RunLock(tmp_path) as lock:
        assert lock.held


HOLDER = """
import sys, time
from selflen.locks import RunLock
with RunLock(sys.argv[1], lease_s=2):
    print("held", flush=True)
    time.sleep(60)
"""


def test_live_holder_in_another_process_is_refused_naming_pid_and_host(tmp_path: Path) -> None:
    import socket

    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        time.sleep(2.5)  # past one lease length: the holder renews it, so it is still not taken over
        with pytest.raises(StoreError, match=f"pid {proc.pid} on {socket.gethostname()}"):
            RunLock(tmp_path, lease_s=2).acquire()
        lease = json.loads((tmp_path / "run.lock").read_text())
        assert time.time() - lease["renewed"] < 2  # renewed by the holder's thread
    finally:
        proc.kill()
        proc.wait()
    with RunLock(tmp_path, lease_s=2) as lock:  # the kernel lock died with it: taken over at once
        assert lock.held


def _fake_lease(tmp_path: Path, age_s: float, lease_s: float = 120) -> None:
    (tmp_path / "run.lock").write_text(json.dumps({
        "pid": 4242, "host": "other-node-17", "since": "2026-01-01T00:00:00", "renewed": time.time() - age_s,
        "lease_s": lease_s, "token": "other"}))


def test_expired_lease_of_another_host_is_taken_over(tmp_path: Path) -> None:
    _fake_lease(tmp_path, age_s=500)
    with RunLock(tmp_path) as lock:
        assert lock.held and json.loads((tmp_path / "run.lock").read_text())["pid"] == os.getpid()
    assert not (tmp_path / "run.lock").exists()


def test_unexpired_lease_of_another_host_is_refused(tmp_path: Path) -> None:
    _fake_lease(tmp_path, age_s=10)
    with pytest.raises(StoreError, match="pid 4242 on other-node-17.*lease was renewed"):
        RunLock(tmp_path).acquire()
    assert json.loads((tmp_path / "run.lock").read_text())["host"] == "other-node-17"  # left alone
    import fcntl

    with open(tmp_path / "run.lock.kernel") as f:  # the refused attempt gave its kernel lock back
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_unwritable_run_directory_is_one_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_dir"  # works as root too, unlike chmod
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot write to the run directory"):
        RunLock(blocker / "run").acquire()
    with pytest.raises(StoreError, match="cannot create the stage folder"):
        Stage(blocker / "iter_1" / "generate", "generate", "h")


def test_corrupt_record_in_the_middle_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "generate" / "records.jsonl"
    path.parent.mkdir()
    path.write_text('{"id": "a"}\n{"id": "b", oops\n{"id": "c"}\n')
    with pytest.raises(StoreError, match=rf"{path}:2: corrupt record.*redo=\[generate\]"):
        read_jsonl(path)
    with pytest.raises(StoreError, match=":2: corrupt record"):
        Stage(path.parent, "generate", "h")
    assert path.read_text().endswith('{"id": "c"}\n')  # nothing cut


def test_full_disk_during_append_keeps_earlier_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    st = Stage(tmp_path / "s", "s", "h")
    st.append({"id": "a"})
    real_fsync = os.fsync

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StoreError, match="disk is full.*re-run the same command"):
        st.append({"id": "b", "v": "x" * 1000})
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert [r["id"] for r in read_jsonl(st.records_path)] == ["a"]
    assert st.records_path.read_text() == '{"id": "a"}\n'  # nothing half-written
    st2 = Stage(tmp_path / "s", "s", "h")
    st2.append({"id": "b"})  # resumes
    assert [r["id"] for r in st2.records()] == ["a", "b"]


def test_stop_request_raises_after_the_record_is_written(tmp_path: Path) -> None:
    from selflen import errors

    st = Stage(tmp_path / "s", "s", "h")
    errors.request_stop(signal.SIGTERM)
    try:
        with pytest.raises(errors.Interrupted) as info:
            st.append({"id": "a"})
    finally:
        errors.clear_stop()
    assert info.value.exit_code == 143 and [r["id"] for r in st.records()] == ["a"]


def test_without_kernel_locks_the_lease_decides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import fcntl
    import socket

    def no_flock(_fd: int, _op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")  # some NFS mounts

    monkeypatch.setattr(fcntl, "flock", no_flock)
    live = {"pid": os.getppid(), "host": socket.gethostname(), "since": "t", "lease_s": 120, "token": "x"}
    (tmp_path / "run.lock").write_text(json.dumps({**live, "renewed": time.time()}))
    with pytest.raises(StoreError, match=f"pid {os.getppid()}.*its process is alive"):
        RunLock(tmp_path).acquire()
    (tmp_path / "run.lock").write_text(json.dumps({**live, "renewed": time.time() - 500}))  # stopped renewing
    with RunLock(tmp_path) as lock:
        assert lock.held


def test_old_format_lock_of_a_live_process_is_refused(tmp_path: Path) -> None:
    import socket

    (tmp_path / "run.lock").write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))
    with pytest.raises(StoreError, match="its process is alive"):
        RunLock(tmp_path).acquire()


def test_current_model_of_a_role_skips_iterations_that_trained_nothing(tmp_path: Path) -> None:
    from selflen.store import RunLayout

    lay = RunLayout(tmp_path)
    assert lay.current("gen", 3) == (None, 0)
    adapter = lay.finetune_dir("gen", 1) / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    lay.finetune_dir("gen", 2).mkdir(parents=True)  # iteration 2 had no data: no adapter
    assert lay.current("gen", 2) == (adapter, 1) and lay.current("gen", 3) == (adapter, 1)
    assert lay.current("ext", 2) == (None, 0)


@pytest.mark.parametrize("redo", [["generate"], ["iter_1/generate"]])
def test_redo_names_a_stage_in_every_iteration_or_in_one(redo: list[str], tmp_path: Path) -> None:
    from selflen.stage_runner import Runner
    from selflen.store import RunLayout
    from selflen.tracking import NullLogger

    layout = RunLayout(tmp_path / "run")
    for k in (1, 2):  # both iterations were run with another config
        Stage(layout.stage(k, "generate"), f"iter_{k}/generate", "old")
    cfg = config()
    cfg.redo = redo
    runner = Runner(cfg, layout, tmp_path, NullLogger())
    new = _Settings(2)
    assert runner.open(1, "generate", new, ["root"]).redone
    if redo == ["generate"]:
        assert runner.open(2, "generate", new, ["root"]).redone
    else:  # the error's own hint names the stage by its folder: only that one is redone
        with pytest.raises(StoreError, match=r"redo=\[iter_2/generate\]"):
            runner.open(2, "generate", new, ["root"])


@dataclass
class _Settings:
    n: int


def test_fork_copies_the_frozen_data_stages_a_recipe_sweep_trains_on(tmp_path: Path) -> None:
    from selflen.run_inputs import fork_run
    from selflen.store import RunLayout, StoreError

    src = RunLayout(tmp_path / "source")
    for point, name in [(0, "instruct"), (0, "evaluate"), (1, "instruct"), (1, "generate"), (1, "sft_data"),
                        (1, "finetune_gen"), (1, "evaluate"), (2, "instruct")]:
        (src.stage(point, name)).mkdir(parents=True)
        (src.stage(point, name) / "done.json").write_text("{}")
    (src.stage(1, "extend")).mkdir(parents=True)  # unfinished: not copied
    job = RunLayout(tmp_path / "job")
    job.stage(0, "evaluate").mkdir(parents=True)  # already there: kept, not overwritten
    copied = fork_run(src.root, job)
    assert copied == ["iter_0/instruct", "iter_1/instruct", "iter_1/generate", "iter_1/sft_data"]
    assert not (job.stage(1, "finetune_gen")).exists() and not (job.stage(1, "evaluate")).exists()  # retrained
    assert not (job.stage(2, "instruct")).exists() and not (job.stage(1, "extend")).exists()
    assert not (job.stage(0, "evaluate") / "done.json").exists()
    assert fork_run(src.root, job) == []  # a resumed job copies nothing again
    with pytest.raises(StoreError, match="paths.fork_from=.*no finished iter_1/sft_data"):
        fork_run(tmp_path / "nowhere", job)
