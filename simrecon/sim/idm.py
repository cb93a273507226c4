"""The Intelligent Driver Model (Treiber, Hennecke, Helbing 2000): the acceleration of a vehicle that keeps a time
headway to the vehicle ahead. Used by the ``lane-follow`` driver and by reactive actors."""

from __future__ import annotations

import math


def idm_accel(v: float, v0: float, lead: tuple[float, float] | None, max_accel: float, comfort_brake: float,
              headway: float, min_gap: float, exponent: float = 4.0, max_brake: float = 8.0) -> float:
    """m/s^2 at speed ``v`` (m/s) towards the desired speed ``v0``, behind ``lead`` = (bumper-to-bumper gap m,
    its speed along our heading m/s), or on a free road (None); ``-max_brake`` once the gap is closed."""
    free = 1.0 - (v / max(v0, 0.1)) ** exponent
    if lead is None:
        return max_accel * free
    gap, v_lead = lead
    if gap <= 0.0:
        return -max_brake
    want = min_gap + max(0.0, v * headway + v * (v - v_lead) / (2 * math.sqrt(max_accel * comfort_brake)))
    return max(-max_brake, max_accel * (free - (want / gap) ** 2))
