"""``simrecon build-kernels``: build (or load from the cache) the fused encoding kernels and report them."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table


def build_kernels_command(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the compiler output.")] = False,
) -> None:
    """Build the hash-grid kernels this machine supports and print what each backend has."""
    from simrecon.encoding import build_kernels  # lazy: keep CLI start-up free of torch

    report = build_kernels(verbose=verbose)
    table = Table(title="simrecon encoding kernels")
    table.add_column("backend")
    table.add_column("available")
    table.add_column("compiled")
    table.add_column("detail", overflow="fold")
    for name, info in report.items():
        table.add_row(
            name,
            "[green]yes[/green]" if info["available"] else "[red]no[/red]",
            "yes" if info["built"] else "-",
            str(info["detail"]),
        )
    Console().print(table)
