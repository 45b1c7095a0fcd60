"""Faults and bad input, each answered with one clear line and nothing half-written (docs/reliability.md)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from selflen.errors import EngineUnavailable, Interrupted, SelflenError
from selflen.launch import free_port
from selflen.models import ModelNotFound, check_adapter, check_chat_template
from selflen.seeds import SeedError, load_seeds
from selflen.store import StoreError

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
# these tests are about locks and servers, not benchmarks: the loop runs without the benchmark files
NO_DATA = ["evaluate.enabled=false", "instruct.decontaminate=false"]


def test_known_errors_share_one_base() -> None:
    for cls in (StoreError, ModelNotFound, SeedError, EngineUnavailable, Interrupted):
        assert issubclass(cls, SelflenError)
    assert issubclass(SeedError, ValueError)  # older callers catching ValueError still work


# ---------------------------------------------------------------- run identity
def _run_dir(*overrides: str) -> str:
    from hydra import compose, initialize_config_dir

    from selflen.cli import register_resolvers
    from selflen.config import CONF_DIR

    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
        from hydra.core.hydra_config import HydraConfig

        HydraConfig.instance().set_config(cfg)
        return str(cfg.hydra.run.dir)


def test_run_dir_ignores_where_results_are_reported() -> None:
    base = _run_dir("debug=smoke", "iterations.count=2")
    same = _run_dir("debug=smoke", "iterations.count=2", "online=true", "logger=wandb", "logger.project=p2",
                    "logger.entity=team", "logger.mode=online", "logger.name=wandb", "logger.group=g",
                    "logger.tags=[a,b]", "redo=[generate]")
    assert same == base
    assert _run_dir("debug=smoke", "iterations.count=3") != base  # what shapes results still names the run


# ---------------------------------------------------------------- seeds
@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "no seed instructions"),
        (b"\n\n", "no seed instructions"),
        (b'{"id": "a", "category": "business", "prompt": "p"}\n{oops\n', ":2: bad JSON"),
        (b'{"id": "a", "category": "business"}\n', ":1: field 'prompt' missing"),
        (b'{"id": "a", "category": "business", "prompt": "p"}\n\xff\xfe\n', ":2: not UTF-8"),
    ],
)
def test_malformed_or_empty_seed_file_names_file_and_line(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "seeds.jsonl"
    path.write_bytes(content)
    with pytest.raises(SeedError, match=match) as info:
        load_seeds("en", path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------- model and adapter folders
def test_model_folder_without_chat_template(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 10}))
    with pytest.raises(ModelNotFound, match="has no chat template"):
        check_chat_template(tmp_path)
    from selflen.models import resolve_model

    with pytest.raises(ModelNotFound, match="has no chat template"):
        resolve_model("local", str(tmp_path))
    (tmp_path / "chat_template.jinja").write_text("{{ messages }}")
    check_chat_template(tmp_path)


def test_missing_or_corrupt_adapter_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="missing or has no adapter_config.json"):
        check_adapter(tmp_path / "nope")
    (tmp_path / "adapter_config.json").write_text('{"r": 8, ')
    with pytest.raises(ModelNotFound, match="adapter_config.json is corrupt"):
        check_adapter(tmp_path)
    (tmp_path / "adapter_config.json").write_text('{"r": 8}')
    with pytest.raises(ModelNotFound, match="no adapter weights"):
        check_adapter(tmp_path)
    (tmp_path / "adapter_model.safetensors").write_bytes(b"x")
    check_adapter(tmp_path)


def test_engine_pool_refuses_a_corrupt_adapter_before_loading_anything(tmp_path: Path) -> None:
    from selflen.engines import EnginePool

    built = []
    pool = EnginePool(tmp_path, lambda d: built.append(d))
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{")
    with pytest.raises(ModelNotFound, match="corrupt"):
        pool.for_folder(tmp_path / "adapter", "gen1")
    assert built == []


# ---------------------------------------------------------------- evaluation score
GOOD = {"type": "about", "constraint": "around 10 words", "response": "word " * 10}


def _score(tmp_path: Path, data: bytes, *extra: str) -> tuple[int, str, Path]:
    from evaluation.__main__ import main

    src = tmp_path / "in.jsonl"
    src.write_bytes(data)
    out = tmp_path / "out.jsonl"
    code = main(["score", "--benchmark", "longen", "--input", str(src), "--output", str(out),
                 "--summary", str(tmp_path / "s.json"), *extra])
    return code, str(src), out


def test_non_utf8_bytes_are_one_line_with_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = json.dumps(GOOD).encode() + b"\n"
    code, src, out = _score(tmp_path, good + b'{"response": "\xff\xfe"}\n' + good)
    err = capsys.readouterr().err
    assert code == 2 and f"{src}:2: not UTF-8" in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()  # nothing half-written
    code, _, out = _score(tmp_path, good + b"\xff\n" + good, "--skip-bad")
    assert code == 0 and len(out.read_text().splitlines()) == 2


def test_very_long_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    long_row = dict(GOOD, response="word " * 400_000)  # a 2 MB answer is scored, not refused
    code, _, out = _score(tmp_path, (json.dumps(long_row) + "\n").encode())
    assert code == 0 and json.loads(out.read_text())["words"] == 400_000
    from selflen import jsonl

    monkeypatch.setattr(jsonl, "MAX_LINE_BYTES", 1000)
    code, src, _ = _score(tmp_path, (json.dumps(GOOD) + "\n" + json.dumps(long_row) + "\n").encode())
    err = capsys.readouterr().err
    assert code == 2 and f"{src}:2: line of" in err and "longer than the limit" in err


def test_benchmark_row_with_missing_fields(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, src, out = _score(tmp_path, (json.dumps(GOOD) + "\n" + json.dumps({"type": "about"}) + "\n").encode())
    err = capsys.readouterr().err
    assert code == 2 and f"{src}:2:" in err and "missing field" in err and not out.exists()


def test_known_runtime_error_is_one_line_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import evaluation.__main__ as cli

    def down(_args: object) -> int:
        raise EngineUnavailable("the server at http://127.0.0.1:1/v1 answered none of 3 requests\nafter 2 retries")

    monkeypatch.setattr(cli, "cmd_score", down)
    code, _, _ = _score(tmp_path, b"")
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("selflen: error: the server at") and err.count("\n") == 1


def test_full_disk_while_writing_scores_leaves_no_output(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import errno


    class Full:
        def __init__(self, *_a: object, **_k: object) -> None:
            pass

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *_a: object) -> None:
            pass

        def write(self, _text: str) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

    code, src, out = _score(tmp_path, (json.dumps(GOOD) + "\n").encode())
    assert code == 0 and out.exists()
    before = out.read_text()
    import builtins

    def full_on_write(path: object, mode: str = "r", *a: object, **k: object):
        return Full() if "w" in mode else builtins.open(path, mode, *a, **k)

    from selflen import jsonl

    monkeypatch.setattr(jsonl, "open", full_on_write, raising=False)
    code, _, out = _score(tmp_path, (json.dumps(GOOD) + "\n").encode())
    err = capsys.readouterr().err
    assert code == 1 and "cannot write it: the disk is full" in err and err.count("\n") == 1
    assert out.read_text() == before and not list(tmp_path.glob("*.tmp"))  # the old output is intact


# ---------------------------------------------------------------- train CLI
def test_train_cli_prints_a_store_error_as_one_line(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.lock").write_text(json.dumps({
        "pid": 99, "host": "node-b", "since": "now", "renewed": time.time(), "lease_s": 600, "token": "t"}))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), "debug=smoke", "logger=none", *NO_DATA,
                           f"hydra.run.dir={run_dir}"], cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("selflen:")]
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert lines == [lines[0]] and "selflen: error: run directory" in lines[0] and "pid 99 on node-b" in lines[0]
    assert "Traceback" not in proc.stderr
    assert socket.gethostname() != "node-b"


def test_report_error_for_a_stop_names_the_last_finished_stage(capsys: pytest.CaptureFixture[str]) -> None:
    import signal

    from selflen.cli import report_error

    err = Interrupted(signal.SIGTERM)
    err.stage, err.last_done = "iter_1/generate", "iter_1/instruct"
    assert report_error(err) == 143
    line = capsys.readouterr().err
    assert line.count("\n") == 1 and "SIGTERM during iter_1/generate" in line
    assert "last finished stage: iter_1/instruct" in line and "re-run the same command" in line
    assert report_error(Interrupted(signal.SIGINT)) == 130
    assert report_error(StoreError("a\nb")) == 1 and capsys.readouterr().err.endswith("selflen: error: a b\n")


def test_train_with_a_server_that_stays_down_stops_with_one_line(tmp_path: Path) -> None:
    port = free_port()  # a loopback port nobody listens on
    run_dir = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), "debug=smoke", "logger=none", "backend=openai",
                           f"backend.base_url=http://127.0.0.1:{port}/v1", "backend.max_retries=1",
                           *NO_DATA, f"hydra.run.dir={run_dir}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    lines = [ln for ln in proc.stderr.splitlines() if "selflen:" in ln]
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert len(lines) == 1 and "selflen: error: the server at http://127.0.0.1" in lines[0], proc.stderr[-3000:]
    assert "after 1 retries" in lines[0] and "re-run the same command to resume" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (run_dir / "run.lock").exists() and not list(run_dir.glob("**/done.json"))


def test_unwritable_run_directory_on_the_command_line_is_one_line(tmp_path: Path) -> None:
    from selflen.cli import run_dir_problem

    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert run_dir_problem([f"hydra.run.dir={tmp_path / 'new' / 'run'}"]) is None
    assert "is not a directory" in run_dir_problem([f"hydra.run.dir={blocker / 'run'}"])
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), "debug=smoke", "logger=none",
                           f"hydra.run.dir={blocker / 'run'}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and proc.stderr.startswith("selflen: error: cannot create the run directory")
    assert proc.stderr.count("\n") == 1 and not (blocker.parent / "run").exists()


def test_first_signal_asks_for_a_stop_the_second_stops_at_once() -> None:
    import signal

    from selflen.errors import check_stop, install_stop_handlers, stop_requested

    before = signal.getsignal(signal.SIGINT)  # the default handler, or SIG_IGN in a shell's background job
    restore = install_stop_handlers()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert stop_requested()  # nothing raised yet: the stop waits for the next record boundary
        with pytest.raises(Interrupted, match="SIGTERM"):
            check_stop()
        with pytest.raises(Interrupted, match="SIGINT"):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)
    finally:
        restore()
    assert not stop_requested() and signal.getsignal(signal.SIGINT) is before  # restored as it was
