"""``simrecon convert FORMAT SRC OUT``: turn a dataset folder into a drive log (docs/datasets.md).

The typer wiring lives in the CLI app; this module only does the work. Bad input raises
``ReaderError`` / ``ValueError`` with a one-line message (the app maps them to exit code 2).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from simrecon.data.model import DriveLog
from simrecon.data.outdir import check_target
from simrecon.data.readers import ReaderError, read, write_conversion


def _split_cameras(cameras: list[str] | None) -> list[str] | None:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]``; None or empty -> None (all cameras)."""
    if not cameras:
        return None
    out = [c.strip() for item in cameras for c in str(item).split(",") if c.strip()]
    return out or None


def convert_command(format: str, src: Path, out: Path, cameras: list[str] | None = None, frames: str | None = None,
                    skip_missing: bool = False, force: bool = False, console: Console | None = None,
                    **options) -> DriveLog:
    """Convert ``src`` (dataset ``format``) into the drive log folder ``out``; returns the written log."""
    console = console or Console(stderr=True)
    src, out = Path(src), Path(out)
    if out.exists() and not force:
        raise ReaderError(out, "", "output already exists (use --force to replace it)")
    if out.exists() and not out.is_dir():
        raise ReaderError(out, "", "output exists and is not a folder")
    check_target(out, force)  # before reading the source: --force replaces only what simrecon wrote
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents:
        raise ReaderError(out, "", f"the output must not be inside the source {src}")
    # Reader warnings go through logging; show them as plain lines, not tracebacks.
    records: list[str] = []
    handler = _ListHandler(records)
    logger = logging.getLogger("simrecon.data.readers")
    logger.addHandler(handler)
    old_propagate = logger.propagate
    logger.propagate = False
    try:
        if console.is_terminal:
            with console.status(f"reading {format} {src}"):
                conv = read(format, src, cameras=_split_cameras(cameras), frames=frames, skip_missing=skip_missing,
                            **options)
        else:
            conv = read(format, src, cameras=_split_cameras(cameras), frames=frames, skip_missing=skip_missing,
                        **options)
    finally:
        logger.removeHandler(handler)
        logger.propagate = old_propagate
    for w in conv.warnings[:20]:
        console.print(Text.assemble(("warning: ", "yellow"), w), highlight=False, soft_wrap=True)
    if len(conv.warnings) > 20:
        console.print(Text.assemble(("warning: ", "yellow"), f"... and {len(conv.warnings) - 20} more"),
                      soft_wrap=True)
    total = len(conv.images) + len(conv.lidar)
    if console.is_terminal:
        with Progress(TextColumn("[bold]converting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TextColumn("{task.description}"), console=console, transient=True) as progress:
            task = progress.add_task("", total=max(total, 1))

            def step(done: int, total: int, rel: str) -> None:  # placing files, then decoding the images
                progress.update(task, completed=done, total=total, description=rel)

            log = write_conversion(conv, out, overwrite=force, progress=step)
    else:  # logs and pipes: no progress bar, no stray blank lines
        log = write_conversion(conv, out, overwrite=force)
    console.print(f"wrote {out}: {log.summary()}", highlight=False, markup=False, soft_wrap=True)
    for name, how in (log.extra.get("source", {}).get("lidar_models") or {}).items():
        console.print(f"lidar {name}: sensor model {how}", highlight=False, markup=False, soft_wrap=True)
    return log


@contextmanager
def decode_progress(console: Console) -> Iterator[Callable[[int, int, str], None] | None]:
    """A ``progress(done, total, path)`` callback drawing a transient bar while images are decoded.

    Only on a terminal (None elsewhere, so logs and pipes get no bar)."""
    if not console.is_terminal:
        yield None
        return
    with Progress(TextColumn("[bold]decoding images"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), console=console, transient=True) as progress:
        task = progress.add_task("", total=None)

        def step(done: int, total: int, path: str) -> None:
            progress.update(task, completed=done, total=total, description=Path(path).name)

        yield step


class _ListHandler(logging.Handler):
    def __init__(self, sink: list[str]):
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(record.getMessage())
