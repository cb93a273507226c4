"""Configuration dataclasses to and from JSON, for every component (scene.json keeps the configuration).

``from_dict(cls, data)`` walks the dataclass ``cls`` field by field, nested configuration dataclasses
included: keys this version does not know (a scene written by another version) are dropped with one
warning naming them, missing keys take their defaults, and a value of the wrong type is a ValueError
naming it (``config.model.background.hidden: expected an integer, got '16'``). ``check_finite`` refuses
NaN and infinity anywhere in a configuration.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, TypeVar

from .logs import get_logger

log = get_logger("simrecon.config")
T = TypeVar("T")


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def _typed(default: Any, value: Any, name: str) -> Any:
    """``value`` when it has the type of the field's default (an int for a float field too); ValueError naming
    it otherwise (a scene.json edited by hand, or corrupt)."""
    if default is dataclasses.MISSING or default is None:
        return value
    kind = type(default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, float) and value.is_integer():  # e.g. steps = 1e5 set in Python
        return int(value)
    if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
        return value
    expected = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
                list: "a list", dict: "an object"}.get(kind, kind.__name__)
    raise ValueError(f"{name}: expected {expected}, got {value!r}"[:200])


def from_dict(cls: type[T], data: Any, where: str = "config") -> T:
    """An instance of the dataclass ``cls`` from ``data`` (see the module docstring); ``where`` names it in
    messages."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        log.warning("ignoring settings this version does not know: %s", ", ".join(f"{where}.{k}" for k in unknown))
    values = {}
    for name, f in fields.items():
        if name not in data:
            continue
        default = _default(f)
        if dataclasses.is_dataclass(default):
            values[name] = from_dict(type(default), data[name], f"{where}.{name}")
        else:
            values[name] = _typed(default, data[name], f"{where}.{name}")
    return cls(**values)


def to_dict(obj: Any) -> dict:
    """The JSON-ready form of a configuration dataclass (the inverse of ``from_dict``)."""
    return dataclasses.asdict(obj)


def check_finite(obj: Any, where: str) -> None:
    """ValueError naming the first float field of the dataclass ``obj`` (nested ones included) that is NaN or
    infinite: ``where.field: must be a finite number (got nan)``. A NaN passes every ``x > 0`` style test that
    is written as ``x <= 0: refuse``, so this runs before them."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        name = f"{where}.{f.name}"
        if dataclasses.is_dataclass(value):
            check_finite(value, name)
        elif isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name}: must be a finite number (got {value})")
