"""Output folders that simrecon builds whole and swaps into place (``synth``, ``convert``, ``render``).

Each such folder is built under a temporary name beside its target and renamed into place when complete.
It carries a marker file, ``.simrecon-output``, naming the command that wrote it. ``--force`` replaces
only an empty folder or one with that marker: a folder the user made, or one that another tool wrote,
is never deleted, whatever it holds.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

MARKER = ".simrecon-output"


def mark(folder: Path, command: str) -> None:
    """Record in ``folder`` that simrecon's ``command`` wrote it (so ``--force`` may replace it later)."""
    (Path(folder) / MARKER).write_text(json.dumps({"written_by": "simrecon", "command": command}) + "\n")


def written_by_simrecon(folder: Path) -> bool:
    return (Path(folder) / MARKER).is_file()


def check_target(out: Path, force: bool) -> None:
    """Refuse ``out`` unless it is absent, or ``force`` is given and simrecon may replace it."""
    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir() or out.is_symlink():
        raise FileExistsError(f"{out}: exists and is not a folder simrecon wrote; refusing to replace it")
    if not force:
        raise FileExistsError(f"{out} already exists (use --force to replace it)")
    if any(out.iterdir()) and not written_by_simrecon(out):
        raise FileExistsError(f"{out}: --force replaces only folders that simrecon wrote (it has no {MARKER}); "
                              "remove it yourself or choose another output folder")


def temp_beside(out: Path) -> Path:
    """A fresh temporary folder next to ``out`` (same file system, so the final rename is atomic)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp


def swap_in(tmp: Path, out: Path, command: str) -> Path:
    """Mark the finished ``tmp`` and rename it to ``out``, replacing what ``check_target`` allowed."""
    tmp, out = Path(tmp), Path(out)
    mark(tmp, command)
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)
    return out


@contextmanager
def naming_failures(target: Path) -> Iterator[None]:
    """Re-raise a full disk, or an OSError that names no file, as one line naming ``target``. A full disk
    surfaces as '[Errno 28] No space left on device' from PIL, '125800 requested and 6112 written' from
    numpy, or with the temporary file's name from shutil: none of them says which output failed."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None and exc.errno != errno.ENOSPC:
            raise
        new = OSError(f"{target}: cannot write ({exc.strerror or exc})")
        new.errno = exc.errno
        raise new from None
