"""``simrecon drive``: the work behind the command (docs/simulation.md).

Bad input (scenario, policy, camera, setting, output folder) raises a one-line ``ValueError``,
``FileExistsError`` or ``FileNotFoundError`` before anything is written; the app maps them to exit code 2.
A policy that fails while driving is not bad input: the run ends with a ``policy_error`` event and is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from rich.console import Console
from rich.markup import escape

from .progress import bar


def sim_settings(dt: Optional[float], duration: Optional[float], cameras: Optional[list[str]],
                 width: Optional[int], height: Optional[int], settings: list[str]) -> list[tuple[str, Any]]:
    """The settings the options give, as (dotted name, value): ``--set KEY=VALUE`` items first, then the named
    options; each checked here (a one-line ValueError) so that nothing runs with a bad one."""
    from ..config_io import set_field
    from ..sim import SimConfig
    from ..sim.config import apply_settings

    probe, out = SimConfig(), []
    for item in settings:
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. world.end_on_off_road=true")
        try:
            out.append((key.strip(), set_field(probe, key.strip(), raw, "--set", text=True)))
        except ValueError as exc:
            raise ValueError(str(exc).replace("simrecon config lists them", "docs/simulation.md lists them")) from None
    for name, value in (("width", width), ("height", height)):
        if value is not None and value < 1:
            raise ValueError(f"--{name}: must be at least 1 pixel, got {value}")
    named = {"world.dt": dt, "world.duration_s": duration, "sensors.width": width, "sensors.height": height,
             "sensors.cameras": [n for item in cameras for n in item.split(",") if n] if cameras else None}
    out += [(k, v) for k, v in named.items() if v is not None]
    apply_settings(SimConfig(), out, "--set")
    return out


def drive_command(scenario: Path, policy: str, out: Path, settings: list, frames: bool = False,
                  force: bool = False, console: Console | None = None, renderer: str = "fast"):
    """Drive ``policy`` through ``scenario`` into ``out`` with a progress bar; prints a one-line summary."""
    from ..sim import drive

    console = console or Console(stderr=True)
    with bar(console) as progress:
        task = progress.add_task("", total=None, what="drive")

        def tick(done: int, total: int, label: str) -> None:
            progress.update(task, completed=done, total=total, description=label)

        result = drive(scenario, policy, out, None, frames=frames, force=force, progress=tick, renderer=renderer,
                       settings=settings)
    m = result.metrics
    what = f"collision with {m.collision_actor} at {m.collision_time:.2f} s" if m.collision else "no collision"
    console.print(escape(f"wrote {out}: {m.steps} steps ({m.duration_s:.1f} s), ended by {m.ended}; {what}; "
                         f"route {100 * m.route_completion:.0f} %; score {m.score:.3f}"), highlight=False,
                  soft_wrap=True)
    if m.policy_error:
        console.print(escape(f"policy error: {m.policy_error}"), highlight=False, soft_wrap=True)
    return result


def drive_suite_command(suite: Path, policy: str, baseline: Optional[str], out: Path, settings: list,
                        force: bool = False,
                        console: Console | None = None, renderer: str = "fast") -> int:
    """Run a drive suite with a progress bar; prints one line per case that failed and the verdict; 0 or 1."""
    from ..export.drive_suite import drive_suite

    console = console or Console(stderr=True)
    with bar(console) as progress:
        task = progress.add_task("", total=None, what="drive-suite")

        def tick(label: str, done: int, total: int) -> None:
            progress.update(task, completed=done, total=total, description=label)

        result = drive_suite(suite, policy, out, baseline, settings=settings, force=force, progress=tick,
                             renderer=renderer)
        progress.update(task, completed=len(result.cases), total=len(result.cases))
    for c in result.cases:
        if not c.passed:
            why = c.error or "; ".join(r.message for r in c.regressions)
            console.print(escape(f"{'ERROR' if c.error else 'REGRESSION'} {c.name}: {why}"), highlight=False,
                          soft_wrap=True)
    failed = sum(not c.passed for c in result.cases)
    console.print(escape(f"{'PASSED' if result.passed else 'FAILED'}: {len(result.cases) - failed} of "
                         f"{len(result.cases)} cases passed; report {out / 'report.html'}"), highlight=False,
                  soft_wrap=True)
    return 0 if result.passed else 1
