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
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save({"model": model_state, "optimizer": optim_state, "step": step, "elapsed": elapsed, **(extra or {})},
               tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable simrecon checkpoint ({exc.__class__.__name__}: {exc})") from exc
