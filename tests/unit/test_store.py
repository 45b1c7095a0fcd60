"""Run store: crash-safe appends, torn-line recovery, locks, done markers and config hashes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from selflen.store import RunLock, Stage, StoreError, config_hash, read_jsonl

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
