"""Configuration dataclasses to and from JSON, for every component (scene.json keeps the configuration).

``from_dict(cls, data)`` walks the dataclass ``cls`` field by field, nested configuration dataclasses
included: keys this version does not know (a scene written by another version) are dropped with one
warning naming them, missing keys take their defaults, and a value of the wrong type is a ValueError
naming it (``config.model.background.hidden: expected an integer, got '16'``). ``check_finite`` refuses
NaN and infinity anywhere in a configuration.

Configuration as documentation: every field is declared with ``doc(default, "what it does", unit="m")``, so its
help and unit travel with it; ``describe`` lists every field of a configuration (dotted name, type, value,
default, unit, help) for ``simrecon config`` and docs/config.md, and ``set_field`` sets one by its dotted name
with the same type checks as ``from_dict`` (``simrecon reconstruct --set``).
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import difflib
import json
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


def doc(default: Any, help: str, unit: str = "") -> Any:
    """A dataclass field that carries its documentation: ``steps: int = doc(20000, "stop at this step",
    unit="steps")``. ``help`` is one line; ``unit`` the field's unit (a count's noun, "m", "fraction", ...).
    A configuration dataclass (class or instance) or a list/dict default becomes a ``default_factory``."""
    meta = {"help": help, "unit": unit}
    if isinstance(default, type) and dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=default, metadata=meta)
    if dataclasses.is_dataclass(default) or isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class FieldDoc:
    """One setting of a configuration, as ``describe`` lists it."""

    name: str  # dotted path from the top: "budget.steps", "model.background.hidden"
    type: str  # "int", "float", "bool", "str"; "group" for a nested configuration (``describe(groups=True)``)
    value: Any  # the described object's value (the default when a class is described)
    default: Any  # the class's default
    unit: str
    help: str


def describe(cls_or_obj: Any, groups: bool = False) -> list[FieldDoc]:
    """Every setting of a configuration dataclass (a class: its defaults; an instance: its values), nested
    configurations flattened to dotted names in declaration order; ``groups`` adds a row for each nested one
    (before its fields)."""
    obj = cls_or_obj() if isinstance(cls_or_obj, type) else cls_or_obj
    return _describe(obj, type(obj)(), "", groups)


def _describe(obj: Any, base: Any, prefix: str, groups: bool) -> list[FieldDoc]:
    rows = []
    for f in dataclasses.fields(obj):
        value, default, name = getattr(obj, f.name), getattr(base, f.name), prefix + f.name
        text, unit = f.metadata.get("help", ""), f.metadata.get("unit", "")
        if dataclasses.is_dataclass(value):
            if groups:
                rows.append(FieldDoc(name, "group", None, None, unit, text))
            rows += _describe(value, default if type(default) is type(value) else type(value)(), name + ".", groups)
        else:
            kind = type(default).__name__ if default is not None else type(value).__name__
            rows.append(FieldDoc(name, kind, value, default, unit, text))
    return rows


def parse_value(text: str, like: Any) -> Any:
    """A command-line value for a field whose value is ``like``: the text itself for a string field, else JSON
    (``true``, ``0.5``, ``"x"``) or a Python literal (``True``, ``1e5``); the text when neither parses (the type
    check then names it)."""
    if isinstance(like, str):
        return text
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return text


def set_field(obj: Any, dotted: str, value: Any, where: str, text: bool = False) -> Any:
    """Set the setting ``dotted`` ("budget.steps") of the configuration dataclass ``obj`` to ``value`` (with
    ``text``, a command-line string read by ``parse_value``), type-checked as ``from_dict`` checks; returns the
    value set. ValueError starting with ``where`` for an unknown name or a group of settings, with ``where
    dotted`` for a value of the wrong type."""
    target, parts = obj, dotted.split(".")
    for i, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(target)} if dataclasses.is_dataclass(target) else {}
        if part not in fields:
            names = [d.name for d in describe(obj)]
            near = difflib.get_close_matches(dotted, names, n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]}?" if near else ""
            raise ValueError(f"{where}: no such setting {dotted!r} (simrecon config lists them{hint})")
        if i < len(parts) - 1:
            target = getattr(target, part)
    current = getattr(target, parts[-1])
    if dataclasses.is_dataclass(current):
        first = dataclasses.fields(current)[0].name
        raise ValueError(f"{where}: {dotted} is a group of settings; set one of them (e.g. {dotted}.{first})")
    default = _default(fields[parts[-1]])
    like = current if default is dataclasses.MISSING or default is None else default
    typed = _typed(like, parse_value(value, like) if text else value, f"{where} {dotted}")
    setattr(target, parts[-1], typed)
    return typed


def sections(cls_or_obj: Any) -> list[tuple[FieldDoc | None, list[FieldDoc]]]:
    """``describe`` by configuration: (None, the top level's own settings) first, then (the group's row, its own
    settings) for every nested configuration in declaration order (a group may hold only groups)."""
    rows = describe(cls_or_obj, groups=True)
    groups = [d for d in rows if d.type == "group"]
    own: dict[str, list[FieldDoc]] = {"": [], **{g.name: [] for g in groups}}
    for d in rows:
        if d.type != "group":
            own[d.name.rpartition(".")[0]].append(d)
    return [(None, own[""])] + [(g, own[g.name]) for g in groups]
