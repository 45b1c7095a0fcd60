"""Typed construction of the config dataclasses from a composed mapping, with one-line errors naming the key.

OmegaConf's structured configs cannot merge into frozen dataclasses, so the composed (and resolved) config is read
here instead: unknown keys are refused (a moved key names its new home, ``selflen.groups.MOVED``), missing keys are
refused when the field has no default, and each value is checked against its annotation (``float`` fields accept
integers and numeric strings such as YAML 1.1's ``5e-4``; ``str`` fields take any scalar as its text)."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

from selflen.groups import MOVED


class SchemaError(ValueError):
    """A value that does not fit its field; ``str(err)`` is one line that names the key."""


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def build(cls: type, data: Mapping[str, Any] | None, where: str = "") -> Any:
    """``cls`` built from ``data``: every key a field, every field without a default given, every value typed."""
    data = dict(data or {})
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            full = f"{where}{key}"
            if full in MOVED:
                raise SchemaError(f"{full} moved: set {MOVED[full]} instead")
            raise SchemaError(f"{full}: no such key (the keys of {where.rstrip('.') or 'the config'}: "
                              f"{', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = value(hints[name], data[name], f"{where}{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise SchemaError(f"{where}{name} is missing: add it to the group's YAML (conf/{where.split('.')[0]}/)")
    return cls(**kwargs)


def value(kind: Any, v: Any, key: str) -> Any:  # one return per annotation form
    """``v`` checked (and, for floats, converted) against the annotation ``kind``."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if v is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return value(option, v, key)
            except SchemaError as err:
                errors.append(str(err))
        raise SchemaError(errors[0])
    if kind is Any:
        return v
    if dataclasses.is_dataclass(kind):
        if not isinstance(v, Mapping):
            raise SchemaError(f"{key}={v!r}: expected a mapping of {kind.__name__} keys")
        return build(kind, v, f"{key}.")
    if origin in (list, tuple):
        if not isinstance(v, list | tuple):
            raise SchemaError(f"{key}={v!r}: expected a list")
        return [value(args[0] if args else Any, x, f"{key}[{i}]") for i, x in enumerate(v)]
    if origin is dict:
        if not isinstance(v, Mapping):
            raise SchemaError(f"{key}={v!r}: expected a mapping")
        return {k: value(args[1] if args else Any, x, f"{key}.{k}") for k, x in v.items()}
    if kind is bool:
        if not isinstance(v, bool):
            raise SchemaError(f"{key}={v!r}: expected true or false")
        return v
    if kind is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise SchemaError(f"{key}={v!r}: expected an integer")
        return v
    if kind is float:
        if isinstance(v, bool):
            raise SchemaError(f"{key}={v!r}: expected a number")
        try:
            return float(v)
        except (TypeError, ValueError):
            raise SchemaError(f"{key}={v!r}: expected a number") from None
    if kind is str:  # a scalar becomes its text (as OmegaConf does), so a choice check can name the options
        if not isinstance(v, str | int | float):
            raise SchemaError(f"{key}={v!r}: expected a string")
        return str(v)
    raise SchemaError(f"{key}: unsupported annotation {kind!r}")
