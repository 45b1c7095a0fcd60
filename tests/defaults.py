"""The config ``python train.py`` runs with (composed from ``conf/``), for tests, and stage settings with changes.

Stage groups take their values from YAML only (``selflen.groups``), so a test starts from what a user gets and
changes only what it is about."""

from __future__ import annotations

import copy
import dataclasses
from functools import cache
from typing import Any

from selflen.config import TrainConfig, load


@cache
def _loaded(overrides: tuple[str, ...]) -> TrainConfig:
    return load(*overrides)


def config(*overrides: str) -> TrainConfig:
    """A fresh copy of the composed config (transformers backend unless overridden), safe to change."""
    return copy.deepcopy(_loaded(("backend=hf", *overrides)))


def group(name: str, **changes: Any) -> Any:
    """The default value of the group ``name`` with ``changes``."""
    return dataclasses.replace(getattr(config(), name), **changes)


def with_changes(settings: Any, group_field: str, **changes: Any) -> Any:
    """``settings`` with ``changes``: keys of its group (the field ``group_field``) go to the group, the rest to the
    settings themselves."""
    inner = getattr(settings, group_field)
    names = {f.name for f in dataclasses.fields(inner)}
    mine = {k: v for k, v in changes.items() if k in names}
    rest = {k: v for k, v in changes.items() if k not in names}
    return dataclasses.replace(settings, **{group_field: dataclasses.replace(inner, **mine)}, **rest)
