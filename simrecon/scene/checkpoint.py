"""Checkpoints and scene weights: written atomically, read with ``weights_only=True`` (they may come from
elsewhere). Every way such a file can be unusable (a pickle of arbitrary objects, another file type, a truncated
or empty file, weights of another model) ends as one ``ValueError`` line naming the file."""

from __future__ import annotations

import errno
import os
import pickle
import re
import shutil
import warnings
from pathlib import Path

import torch

CHECKPOINT = "checkpoint.pt"
NOT_OURS = "not a simrecon checkpoint/weights file"


def write_failed(path: Path, exc: BaseException, kept: str = "") -> OSError:
    """One line saying which ``path`` could not be written and why: a full disk's errors name no file
    (``[Errno 28] No space left on device``, torch's ``file write failed``, numpy's ``N requested and M
    written``). ``kept``: what is left, said after it."""
    if isinstance(exc, OSError) and exc.strerror:
        reason = exc.strerror
    else:
        reason = f"{exc.__class__.__name__}: {(str(exc).splitlines() or [''])[0]}"
    full = (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)) or not isinstance(exc, OSError)
    hint = "; is the disk full?" if full else ""
    return OSError(f"{path}: could not be written ({reason}){hint}{'; ' + kept if kept else ''}")


def save_checkpoint(path: Path, model_state: dict, optim_state: dict | None, step: int, elapsed: float,
                    extra: dict[str, torch.Tensor] | None = None) -> None:
    """Write ``path`` via a temporary file and rename: a crash never leaves a half checkpoint. ``extra``:
    more training state (tensors) kept alongside, e.g. the pixel-sampling error map."""
    save_atomic({"model": model_state, "optimizer": optim_state, "step": step, "elapsed": elapsed, **(extra or {})},
                path)


def temp_name(path: Path) -> Path:
    """The temporary name ``save_atomic`` writes ``path`` under: ``.NAME.tmp-PID`` (see remove_stale_temporaries)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def save_atomic(obj: object, path: Path) -> None:
    """``torch.save`` to a temporary name beside ``path``, renamed when complete. A failed write (a full disk)
    removes the partial file, keeps whatever ``path`` held, and raises OSError saying so."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # torch reports a short write as RuntimeError
        tmp.unlink(missing_ok=True)
        kept = "the previous one is kept" if path.exists() else "nothing was written"
        raise write_failed(path, exc, kept) from exc


_TMP = re.compile(r"^\..+\.tmp-(\d+)$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # ours: left by an earlier run in this process (nothing writes it now)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's), or cannot tell: keep its file
    return True


def remove_stale_temporaries(folder: Path, names: tuple[str, ...] = (), folders: str | None = None) -> list[Path]:
    """Remove the ``.NAME.tmp-PID`` files in ``folder`` whose process is gone (killed, or stopped by a full disk
    while writing), and the ``.NAME.*.tmp`` files of ``names`` (written only by a run that holds the folder).
    With ``folders``: instead the ``.FOLDERS.tmp-PID`` folders of dead processes (a scene folder being made).
    Returns what was removed."""
    removed: list[Path] = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _TMP.match(p.name)
        dead = m is not None and not _alive(int(m.group(1)))
        if folders is not None:
            if dead and p.name.startswith(f".{folders}.tmp-") and p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
            continue
        ours = any(p.name.startswith(f".{n}.") and p.name.endswith(".tmp") for n in names)
        if (dead or ours) and p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _refused(path: Path, why: str) -> ValueError:
    return ValueError(f"{path}: {NOT_OURS} ({why})")


def _why_unreadable(exc: Exception) -> str:
    """A short reason for a failed ``torch.load``, without torch's advice to load with ``weights_only=False``
    (which would run whatever code the file carries)."""
    if isinstance(exc, pickle.UnpicklingError) or "weights_only" in str(exc) or "Weights only" in str(exc):
        return "it holds Python objects other than tensors, which simrecon never unpickles"
    if isinstance(exc, EOFError):
        return "it ends early: truncated"
    text = (str(exc).splitlines() or [""])[0].strip()
    if "zip archive" in text or "central directory" in text or "PytorchStreamReader" in text:
        return "truncated or corrupt: not a complete torch zip archive"
    text = text.split(". ")[0][:160]
    return f"unreadable: {exc.__class__.__name__}{': ' + text if text else ''}"


def _torch_load(path: Path, map_location: str | torch.device) -> object:
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise OSError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not path.is_file():
        raise _refused(path, "not a file")
    if size == 0:
        raise _refused(path, "empty: 0 bytes")
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise OSError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if head != b"PK\x03\x04" and head[:1] != b"\x80":  # torch.save writes a zip archive (a pickle before 1.6)
        raise _refused(path, "neither a zip archive nor a pickle: not a file torch.save wrote")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing: noise here
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except OSError as exc:
        raise OSError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except Exception as exc:  # noqa: BLE001  arbitrary bytes make the unpickler raise almost anything
        raise _refused(path, _why_unreadable(exc)) from None


def _tensor_dict(path: Path, obj: object, what: str) -> dict[str, torch.Tensor]:
    if not isinstance(obj, dict):
        raise _refused(path, f"{what}: expected a dict of tensors, got {type(obj).__name__}")
    bad = next((k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise _refused(path, f"{what}: {bad!r} is not a named tensor")
    return obj


def load_weights(path: Path, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """A scene's ``model.pt``: a dict of named tensors (the model's state)."""
    return _tensor_dict(Path(path), _torch_load(path, map_location), "weights")


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """A training checkpoint: ``model`` (named tensors), ``optimizer``, ``step``, ``elapsed`` and extra tensors."""
    path = Path(path)
    state = _torch_load(path, map_location)
    if not isinstance(state, dict) or "model" not in state:
        got = type(state).__name__ if not isinstance(state, dict) else "a dict without 'model'"
        raise _refused(path, f"expected a training checkpoint, got {got}")
    _tensor_dict(path, state["model"], "model")
    step, elapsed = state.get("step"), state.get("elapsed")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise _refused(path, f"step: expected a count >= 0, got {step!r}")
    if isinstance(elapsed, bool) or not isinstance(elapsed, (int, float)) or not 0 <= elapsed < float("inf"):
        raise _refused(path, f"elapsed: expected seconds >= 0, got {elapsed!r}")
    if state.get("optimizer") is not None and not isinstance(state["optimizer"], dict):
        raise _refused(path, f"optimizer: expected a dict, got {type(state['optimizer']).__name__}")
    return state


def load_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """``model.load_state_dict(state)``, or one line naming ``path`` when the weights are another model's (a
    ``model.pt`` of another configuration, of another log's actors or cameras, or a corrupt one)."""
    own = model.state_dict()
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    parts = []
    if wrong:
        k = wrong[0]
        parts.append(f"{k} is {list(state[k].shape)} where the model has {list(own[k].shape)}"
                     + (f" ({len(wrong) - 1} more such)" if len(wrong) > 1 else ""))
    for what, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            parts.append(f"{len(keys)} {what} tensor(s): {', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}")
    if not parts:
        try:
            model.load_state_dict(state)
            return
        except RuntimeError as exc:
            parts.append((str(exc).splitlines() or [""])[-1].strip())
    raise ValueError(f"{path}: does not fit the model its scene.json describes (weights of another configuration, "
                     f"log or version, or a corrupt file): {'; '.join(parts)}")
