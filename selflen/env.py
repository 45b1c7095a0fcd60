"""The offline-by-default rule for hub and W&B access, shared by ``selflen``, ``evaluation`` and the tests.

Rule: unless the user opted into online use with ``SELFLEN_ONLINE`` set to ``1``, ``true`` or ``yes`` (any
case), ``HF_HUB_OFFLINE=1``, ``HF_DATASETS_OFFLINE=1`` and ``WANDB_MODE=offline`` are set — each only if the
caller has not set it already. Without a network, hub and W&B lookups hang for ~40 s; offline, a missing
local file fails fast instead.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

__all__ = ["OFFLINE_DEFAULTS", "ONLINE_ENV", "apply_offline_defaults", "online_opted_in"]

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
