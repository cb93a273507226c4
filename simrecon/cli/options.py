"""Checks of numeric command-line options, shared by every command.

``float`` options parse ``nan`` and ``inf``; a NaN passes every ``x <= 0: refuse`` test and ran training
without a time budget. ``number("--minutes", "> 0")`` is a typer callback that refuses such values with one
line naming the option (``--minutes: must be a finite number > 0 (got nan)``); ``check_number`` is the same
test for library callers of the command functions.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

_RULES: dict[str, Callable[[float], bool]] = {
    "any": lambda v: True,
    ">= 0": lambda v: v >= 0,
    "> 0": lambda v: v > 0,
    "(0, 1)": lambda v: 0 < v < 1,
}


def check_number(option: str, value: Optional[float], rule: str = "any") -> Optional[float]:
    """``value`` when it is None or a finite number that satisfies ``rule`` (any, >= 0, > 0 or (0, 1));
    a one-line ValueError naming ``option`` otherwise."""
    if value is None:
        return None
    if not math.isfinite(value) or not _RULES[rule](value):
        what = {"any": "", "(0, 1)": " in (0, 1)"}.get(rule, f" {rule}")
        raise ValueError(f"{option}: must be a finite number{what} (got {value:g})")
    return value


def number(option: str, rule: str = "any") -> Callable[[Optional[float]], Optional[float]]:
    """A typer option callback: ``typer.Option(..., "--minutes", callback=number("--minutes", "> 0"))``."""
    if rule not in _RULES:
        raise ValueError(f"unknown rule {rule!r}")

    def callback(value):
        return check_number(option, value, rule)

    return callback


RENDERER_HELP = ("fast: the inference renderer (occupancy grids, rays stop when opaque; the grids are built once "
                 "into SCENE/occupancy.pt); reference: the training path (docs/rendering.md).")


def renderer_choice(value: str) -> str:
    """A typer option callback for ``--renderer``: fast or reference (``scene.neural.RENDERERS``), else one line
    naming the option."""
    from ..scene.neural import check_renderer

    return check_renderer(value)


def noise_pair(option: str, text: str) -> tuple[float, float]:
    """``POS_M,ROT_DEG`` (``--pose-noise 0.1,0.5``) -> (metres, degrees), both finite and >= 0; "" is (0, 0)."""
    if not text.strip():
        return 0.0, 0.0
    parts = text.split(",")
    try:
        pos, rot = (float(p) for p in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        pos, rot = None, None
    if pos is None or not (math.isfinite(pos) and math.isfinite(rot) and pos >= 0 and rot >= 0):
        raise ValueError(f"{option}: expected POS_M,ROT_DEG (two numbers >= 0, e.g. 0.1,0.5), got {text!r}")
    return pos, rot
