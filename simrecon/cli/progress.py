"""Progress bars around long library calls."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..synth import SynthConfig, count_units, generate


def bar(console: Console) -> Progress:
    return Progress(TextColumn("[bold]{task.fields[what]}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.description}"),
                    console=console, transient=True)


def run_synth(out_dir: Path, cfg: SynthConfig, force: bool, console: Console) -> Path:
    """``generate`` with a progress bar; returns the log folder."""
    cfg.check()
    with bar(console) as progress:
        task = progress.add_task("", total=count_units(cfg), what="synth")
        return generate(out_dir, cfg, progress=lambda label: progress.update(task, advance=1, description=label),
                        force=force)
