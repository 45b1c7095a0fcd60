"""Online like the Hugging Face tools (issue 35): a cached model never touches the network, a missing one is
downloaded when the hub answers, an unreachable hub stops the run within seconds with one line and no folder,
``online=false`` or ``HF_HUB_OFFLINE=1`` forces offline, W&B logs online exactly when an API key is configured.

The hub is a loopback stand-in (``tests/hub_standin.py``); no test contacts a public address. Model resolution and
``train.py`` run in child processes: the hub library reads ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` when it is
imported, and this test process is forced offline (``tests/conftest.py``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from selflen.launch import free_port
from tests.hub_standin import HubStandIn

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
REPO_ID = "selflen-test/tiny"
RESOLVE = f"from selflen.models import hub_model_dir; print(hub_model_dir({REPO_ID!r}))"
FORCING = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "SELFLEN_ONLINE", "WANDB_MODE",
           "WANDB_API_KEY", "WANDB_BASE_URL")


def child_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This environment without any offline switch, with its own HF cache and no W&B key."""
    env = {k: v for k, v in os.environ.items() if k not in FORCING}
    env.update(HF_HOME=str(tmp_path / "hf"), NETRC=str(tmp_path / "no-netrc"), PYTHONPATH=str(REPO), **extra)
    return env


def resolve(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", RESOLVE], env=env, capture_output=True, text=True, timeout=120)


def train(args: list[str], env: dict[str, str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120)
    return proc, time.monotonic() - start


@pytest.fixture
def hub(tiny_model: Path):
    with HubStandIn({REPO_ID: tiny_model}) as standin:
        yield standin


def test_a_missing_model_is_downloaded_when_the_hub_answers_then_read_from_the_cache_alone(
        tmp_path: Path, hub: HubStandIn) -> None:
    proc = resolve(child_env(tmp_path, HF_ENDPOINT=hub.url))
    assert proc.returncode == 0, proc.stderr[-2000:]
    folder = Path(proc.stdout.strip().splitlines()[-1])
    assert (folder / "config.json").is_file() and str(folder).startswith(str(tmp_path / "hf"))
    assert ("GET", f"/api/models/{REPO_ID}/revision/main") in hub.requests
    assert any(path.endswith("/model.safetensors") for _, path in hub.requests)
    hub.requests.clear()
    again = resolve(child_env(tmp_path, HF_ENDPOINT=hub.url))  # the cache hit: not one request
    assert again.returncode == 0 and Path(again.stdout.strip().splitlines()[-1]) == folder
    assert hub.requests == []
    dead = resolve(child_env(tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{free_port()}"))  # no hub at all
    assert dead.returncode == 0 and Path(dead.stdout.strip().splitlines()[-1]) == folder


@pytest.mark.parametrize("forced", [{"HF_HUB_OFFLINE": "1"}, {"SELFLEN_ONLINE": "0"}])
def test_forced_offline_never_asks_the_hub(tmp_path: Path, hub: HubStandIn, forced: dict[str, str]) -> None:
    proc = resolve(child_env(tmp_path, HF_ENDPOINT=hub.url, **forced))
    assert proc.returncode != 0 and "online use is off (online=false or HF_HUB_OFFLINE=1)" in proc.stderr
    assert hub.requests == []


def test_online_false_forces_offline_in_the_loop(tmp_path: Path, hub: HubStandIn) -> None:
    env = child_env(tmp_path, HF_ENDPOINT=hub.url)
    proc, _ = train(["debug=smoke", "model.source=hub", f"model.path={REPO_ID}", "online=false", "logger=none"],
                    env, tmp_path)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("selflen:")]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-2000:]
    assert "is not in the local Hugging Face cache and online use is off" in lines[0]
    assert hub.requests == [] and not (tmp_path / "outputs").exists()


def test_an_unreachable_hub_stops_within_seconds_with_one_line_and_leaves_no_folder(tmp_path: Path) -> None:
    env = child_env(tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{free_port()}", SELFLEN_ONLINE="1")
    proc, seconds = train(["model=llama3"], env, tmp_path)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("selflen: error:")]
    assert proc.returncode == 1 and len(errors) == 1, proc.stderr[-2000:]
    assert "'meta-llama/Meta-Llama-3.1-8B-Instruct' is not in the local Hugging Face cache" in errors[0]
    assert "can not be reached" in errors[0] and "huggingface-cli download" in errors[0]
    assert "selflen: warning: SELFLEN_ONLINE is deprecated" in proc.stderr  # the old spelling: one line
    assert "Traceback" not in proc.stderr
    assert seconds < 60  # the interpreter and Hydra start included; the reachability check itself takes < 3 s
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()


def test_a_refused_sweep_leaves_no_folder_and_keeps_what_was_there(tmp_path: Path) -> None:
    other = tmp_path / "outputs" / "earlier"
    other.mkdir(parents=True)
    (other / "summary.json").write_text("{}")
    env = child_env(tmp_path, HF_HUB_OFFLINE="1")
    single, _ = train(["model=llama3"], env, tmp_path)
    sweep, _ = train(["-m", "model=llama3,qwen2"], env, tmp_path)
    for proc in (single, sweep):
        assert proc.returncode == 1 and "online use is off" in proc.stderr, proc.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["earlier"]
    assert (other / "summary.json").is_file() and not (tmp_path / "multirun").exists()


def test_a_start_refused_for_its_fork_source_leaves_no_folder(tmp_path: Path) -> None:
    proc, _ = train(["debug=smoke", "logger=none", f"paths.fork_from={tmp_path / 'nowhere'}"],
                    child_env(tmp_path, HF_HUB_OFFLINE="1"), tmp_path)
    assert proc.returncode == 1 and "no finished iter_1/sft_data" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "outputs").exists()


def test_a_start_refused_by_a_busy_run_folder_never_removes_it(tmp_path: Path) -> None:
    from selflen.locks import RunLock

    run = tmp_path / "run"
    with RunLock(run):  # another start holds the folder (it made it a moment ago: nothing else is in it yet)
        env = child_env(tmp_path, HF_HUB_OFFLINE="1")
        proc, _ = train(["debug=smoke", "logger=none", f"hydra.run.dir={run}"], env, tmp_path)
        assert proc.returncode == 1 and "is in use by pid" in proc.stderr, proc.stderr[-2000:]
        assert (run / "run.lock").is_file()


def test_a_refused_start_in_an_existing_run_folder_keeps_it(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "iter_1" / "instruct").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    proc, _ = train(["model=llama3", f"hydra.run.dir={run}"], child_env(tmp_path, HF_HUB_OFFLINE="1"), tmp_path)
    assert proc.returncode == 1 and (run / "config.json").is_file() and (run / "iter_1" / "instruct").is_dir()


# ---------------------------------------------------------------- W&B: online exactly when a key is configured
def test_wandb_is_online_with_a_key_and_offline_without(tmp_path: Path) -> None:
    from selflen.tracking import wandb_key_configured, wandb_mode

    netrc = tmp_path / "netrc"
    none = {"NETRC": str(netrc)}
    assert wandb_mode("auto", None, none) == ("offline", "no W&B API key (WANDB_API_KEY or `wandb login`)")
    assert wandb_mode("auto", None, {**none, "WANDB_API_KEY": "k" * 40})[0] == "online"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")  # what `wandb login` writes
    netrc.chmod(0o600)
    assert wandb_key_configured(none) and wandb_mode("auto", None, none)[0] == "online"
    assert not wandb_key_configured({**none, "WANDB_BASE_URL": "http://127.0.0.1:1"})  # a key for another host
    assert wandb_mode("auto", False, none)[0] == "offline"  # online=false forces offline
    assert wandb_mode("auto", None, {**none, "WANDB_MODE": "offline"})[0] == "offline"  # W&B's own switch
    assert wandb_mode("offline", None, none)[0] == "offline"  # logger.mode overrides
    assert wandb_mode("online", None, {"NETRC": str(tmp_path / "x")})[0] == "online"
    assert wandb_mode("disabled", None, none)[0] == "disabled"


@pytest.fixture
def listening_port():  # a loopback port that accepts connections (a W&B stand-in for the probe)
    server = socket.create_server(("127.0.0.1", 0))
    yield server.getsockname()[1]
    server.close()


def test_the_run_settles_wandb_mode_before_anything_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           listening_port: int) -> None:
    from selflen.config import load
    from selflen.run_inputs import preflight

    for key in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    cfg = load("debug=smoke", "evaluate.enabled=false", "instruct.decontaminate=false")
    assert cfg.logger.mode == "auto" and cfg.online is None
    assert preflight(cfg).logger.mode == "offline"  # no key
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{listening_port}")
    assert preflight(cfg).logger.mode == "online"  # a key, and W&B answers
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{free_port()}")
    assert preflight(cfg).logger.mode == "offline"  # a key, but W&B does not answer: offline, said in the log
    cfg.logger.mode = "disabled"
    assert preflight(cfg).logger.mode == "disabled"


def test_an_offline_wandb_run_without_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from selflen.tracking import WandbLogger, open_logger

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    with open_logger("wandb", run_dir=tmp_path / "run", config={"x": 1}) as logger:
        assert isinstance(logger, WandbLogger) and logger.run.settings._offline
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))
