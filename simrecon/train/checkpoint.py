"""Checkpoints: written atomically, read with ``weights_only=True`` (they may come from elsewhere)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

CHECKPOINT = "checkpoint.pt"


def save_checkpoint(path: Path, model_state: dict, optim_state: dict | None, step: int, elapsed: float,
                    extra: dict[str, torch.Tensor] | None = None) -> None:
    """Write ``path`` via a temporary file and rename: a crash never leaves a half checkpoint. ``extra``:
    more training state (tensors) kept alongside, e.g. the pixel-sampling error map."""
    save_atomic({"model": model_state, "optimizer": optim_state, "step": step, "elapsed": elapsed, **(extra or {})},
                path)


def save_atomic(obj: object, path: Path) -> None:
    """``torch.save`` to a temporary name beside ``path``, renamed when complete. A failed write (a full disk)
    removes the partial file, keeps whatever ``path`` held, and raises OSError saying so."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # torch reports a short write as RuntimeError
        tmp.unlink(missing_ok=True)
        kept = "the previous one is kept" if path.exists() else "nothing was written"
        raise OSError(f"{path}: could not be written ({exc.__class__.__name__}: {str(exc).splitlines()[0]}); "
                      f"is the disk full? {kept}") from exc


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable simrecon checkpoint ({exc.__class__.__name__}: {exc})") from exc
