"""``simrecon fleet run`` / ``fleet status``: many logs through the pipeline (docs/fleet.md).

The library (``simrecon.fleet``) does the work; this module picks the executor from the options, draws one
progress bar per stage across the fleet and prints the summary table. Bad input raises a one-line
``ValueError`` / ``FileExistsError`` that the app maps to exit code 2; a run with a failed stage exits 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Column, Table

fleet_app = typer.Typer(
    help="Many drive logs through the whole pipeline, on Ray (embedded here, or a cluster by --address) or in "
         "this process.\n\n"
         "Start with:  simrecon fleet run fleet.yaml -o fleet-out   then   simrecon fleet status fleet-out\n\n"
         "The spec file, stages, resources, resume and cluster runs: docs/fleet.md.",
    no_args_is_help=True, rich_markup_mode="markdown", context_settings={"help_option_names": ["-h", "--help"]},
)
EXECUTORS = ("auto", "ray", "local")


def _executor(kind: str, address: Optional[str], cpus: Optional[int], gpus: Optional[int], err: Console):
    from ..fleet import LocalExecutor, RayConfig, RayExecutor, ray_available

    if kind not in EXECUTORS:
        raise ValueError(f"--executor {kind!r}: expected one of {', '.join(EXECUTORS)}")
    if kind == "local" and (address or cpus or gpus):
        raise ValueError("--executor local: runs in this process, one task at a time; --address, --cpus and --gpus "
                         "are for Ray")
    for flag, value in (("--cpus", cpus), ("--gpus", gpus)):
        if value is not None and (value < 0 or (flag == "--cpus" and value == 0)):
            raise ValueError(f"{flag}: expected a count {'>= 1' if flag == '--cpus' else '>= 0'}, got {value}")
    if address and (cpus or gpus):
        raise ValueError("--cpus/--gpus size an embedded Ray; a cluster given by --address has its own")
    if kind == "local" or (kind == "auto" and not address and not ray_available()):
        if kind == "auto":
            err.print("ray is not installed (pip install -c constraints.txt -e '.[cluster]'): running the stages in "
                      "this process, one at a time", highlight=False)
        return LocalExecutor()
    if not ray_available():
        raise ValueError("--executor ray/--address: ray is not installed; pip install -c constraints.txt -e "
                         "'.[cluster]'")
    return RayExecutor(RayConfig(address=address, num_cpus=cpus, num_gpus=gpus))


class _Bars:
    """One bar per stage across the fleet: logs past it (done, failed or blocked) of those that have it."""

    def __init__(self, console: Console):
        self.progress = Progress(TextColumn("[bold]{task.fields[what]:<12}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.description}"), TimeElapsedColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(), console=console, transient=False)
        self.tasks: dict[str, int] = {}
        self.counts: dict[str, dict[str, int]] = {}
        self.console = console

    def __call__(self, event) -> None:
        if event.stage not in self.tasks:
            self.tasks[event.stage] = self.progress.add_task("", total=0, what=event.stage)
            self.counts[event.stage] = {"running": 0, "failed": 0, "reused": 0}
        task, count = self.tasks[event.stage], self.counts[event.stage]
        if event.kind in ("planned", "reused"):
            self.progress.update(task, total=self.progress.tasks[task].total + 1)
        if event.kind == "reused":
            count["reused"] += 1
            self.progress.update(task, advance=1)
        elif event.kind == "start":
            count["running"] += 1
        elif event.kind in ("done", "failed", "retry"):
            count["running"] -= 1
        if event.kind in ("done", "failed", "blocked"):
            self.progress.update(task, advance=1)
        if event.kind in ("failed", "blocked"):
            count["failed"] += 1
        if event.kind in ("failed", "retry"):
            word = "failed" if event.kind == "failed" else f"retrying (attempt {event.attempt} failed)"
            self.console.print(escape(f"{event.log}: {event.stage} {word}: {event.error}"), highlight=False,
                               soft_wrap=True)
        parts = [f"{count[k]} {k}" for k in ("running", "failed", "reused") if count[k]]
        self.progress.update(task, description=", ".join(parts))


def _table(manifest) -> Table:
    """The summary: log, status, the figure columns that any log has, time, the first error."""
    from ..fleet import headline, rows
    from ..fleet.summary import FIGURE_COLUMNS

    found = rows(manifest)
    keep = [i for i in range(len(FIGURE_COLUMNS)) if any(r.figures[i] for r in found)]
    errors = any(r.error for r in found)
    table = Table(Column("log", no_wrap=True), Column("status", no_wrap=True),
                  *(FIGURE_COLUMNS[i][0] for i in keep), "time s", *(["error"] if errors else []),
                  title=headline(manifest))
    for r in found:
        style = {"done": "green", "failed": "red"}.get(r.status, "yellow")
        table.add_row(escape(r.log), f"[{style}]{r.status}[/]", *(r.figures[i] for i in keep), f"{r.seconds:.1f}",
                      *([escape(r.error)] if errors else []))
    return table


@fleet_app.command("run")
def run(
    spec: Path = typer.Argument(..., help="Fleet spec (YAML): logs: (paths, globs, or {path, convert}) and stages: "
                                          "(validate, reconstruct, eval, compose, export, regress, drive)."),
    output: Path = typer.Option(..., "--output", "--out", "-o", help="Output folder: one folder per log, fleet.json "
                                                                    "(the manifest), summary.md and summary.html."),
    address: Optional[str] = typer.Option(None, "--address", help="Join this Ray cluster (auto, HOST:6379 or "
                                                                  "ray://HOST:10001) instead of starting Ray here."),
    executor: str = typer.Option("auto", "--executor", help="ray, local (in this process, one task at a time), or "
                                                            "auto: ray when it is installed."),
    max_parallel: Optional[int] = typer.Option(None, "--max-parallel", help="Tasks running at once (default: Ray's "
                                                                            "CPU count; Ray also caps them by the "
                                                                            "stages' cpus/gpus)."),
    cpus: Optional[int] = typer.Option(None, "--cpus", help="CPU cores an embedded Ray may use (default: all)."),
    gpus: Optional[int] = typer.Option(None, "--gpus", help="GPUs an embedded Ray may use (default: those found)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in OUT: skip the stages done (with the "
                                                        "same settings), redo what failed or was interrupted; a "
                                                        "killed reconstruction resumes from its checkpoint."),
) -> None:
    """Take every log of SPEC through its stages; exit 1 when a stage failed (its log's other stages are blocked,
    the other logs go on).

    Stages of one log run in order; logs run in parallel up to the resources. A failure that is not bad input
    (a crash, a killed worker) is retried up to the stage's `retries`. OUT/fleet.json is updated as each
    (log, stage) starts, finishes or fails. See docs/fleet.md.
    """
    from ..fleet import RunOptions, load_spec, run_fleet

    err = Console(stderr=True)
    fleet = load_spec(spec)
    chosen = _executor(executor, address, cpus, gpus, err)
    bars = _Bars(err)
    with bars.progress:
        manifest = run_fleet(fleet, output, chosen, RunOptions(resume=resume, max_parallel=max_parallel),
                             on_event=bars)
    Console().print(_table(manifest))
    err.print(f"wrote {output / 'fleet.json'}, {output / 'summary.html'}", highlight=False, soft_wrap=True)
    if manifest.failed:
        raise typer.Exit(1)


@fleet_app.command("status")
def status(
    output: Path = typer.Argument(..., metavar="OUT", help="The output folder of simrecon fleet run."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest (fleet.json) instead of the table."),
) -> None:
    """Where a fleet run stands: per log its status, figures, time per stage and first error."""
    from ..fleet import read_manifest

    manifest = read_manifest(output)
    if as_json:
        typer.echo(json.dumps(manifest.to_json(), indent=1))
        return
    Console().print(_table(manifest))
