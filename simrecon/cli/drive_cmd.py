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


def drive_suite_command(suite: Path, policy: Optional[str], baseline: Optional[str], out: Path, settings: list,
                        force: bool = False, console: Console | None = None, renderer: str = "fast",
                        detector: Optional[str] = None, baseline_detector: Optional[str] = None) -> int:
    """Run a drive suite with a progress bar; prints one line per case that failed and the verdict; 0 or 1."""
    from ..export.drive_suite import drive_suite

    console = console or Console(stderr=True)
    with bar(console) as progress:
        task = progress.add_task("", total=None, what="drive-suite")

        def tick(label: str, done: int, total: int) -> None:
            progress.update(task, completed=done, total=total, description=label)

        result = drive_suite(suite, policy, out, baseline, settings=settings, force=force, progress=tick,
                             renderer=renderer, detector=detector, baseline_detector=baseline_detector)
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


def run_demo_drive(out_dir: Path, scene: Path, console: Console, renderer: str = "fast") -> str:
    """The demo's closed-loop step: ``lane-follow`` drives ``scene`` (the reconstruction, or the synthetic log)
    behind an inserted slower car, with the front camera observed at 160x96; returns the report's HTML section
    (paths relative to ``out_dir``)."""
    import html

    import yaml

    from ..sim import drive

    out_dir = Path(out_dir)
    path = out_dir / "scenarios" / "slow_lead.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"name": "slow_lead", "scene": str(Path(scene).resolve()), "cameras": ["front"],
           "actors": [{"id": "lead_car", "source": "car_1", "trajectory": [{"t": 0.0, "position": [14.0, -1.75]},
                                                                          {"t": 2.9, "position": [22.7, -1.75]}]}],
           "drive": {"sensors": {"width": 160, "height": 96}}}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    run = out_dir / "drive"
    with bar(console) as progress:
        task = progress.add_task("", total=None, what="drive")
        result = drive(path, "lane-follow", run, frames=True, force=True, renderer=renderer,
                       progress=lambda done, total, label: progress.update(task, completed=done, total=total,
                                                                          description=label))
    m = result.metrics
    what = f"hit {m.collision_actor} at {m.collision_time:.2f} s" if m.collision else "no collision"
    line = (f"lane-follow behind a car at 3 m/s: {m.steps} steps, {what}, route {100 * m.route_completion:.0f} %, "
            f"min time to collision {m.min_ttc if m.min_ttc is not None else float('inf'):.2f} s, score {m.score:.3f}")
    console.print(escape(line), highlight=False, soft_wrap=True)
    return (f"<h2>Closed-loop drive</h2><p>{html.escape(line)} (<code>simrecon drive {html.escape(str(path))} "
            f"--policy lane-follow</code>; <a href='drive/report.html'>run report</a>). The camera is rendered at "
            f"the simulated ego's pose every 0.1 s; right: bird's-eye view.</p>"
            f"<img src='drive/video.gif' alt='closed-loop drive' style='image-rendering:pixelated;width:100%;"
            f"max-width:960px'>")
