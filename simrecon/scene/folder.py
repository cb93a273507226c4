"""The scene folder (docs/scene-format.md): ``scene.json``, what a reconstructed scene is made of, and the
facts every reader of a scene needs (its model's configuration, the sweeps it trained on, the device).
``train`` writes scene folders through this module and ``scene/checkpoint.py``; everything else reads."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config_io import check_finite
from ..data.io import atomic_write_text
from ..data.model import DriveLog
from ..fields import SceneBox
from .checkpoint import write_failed
from ..render import SceneModelConfig

SCENE_FORMAT = "simrecon-scene"
SCENE_VERSION = 1
MODEL_FILE = "model.pt"
SCENE_FILE = "scene.json"


@dataclass
class SceneInfo:
    # The drive log it was trained on, relative to the scene folder with POSIX separators ("../street/log"), so
    # that a scene moved or copied together with its log still finds it; absolute in scenes written before that.
    source_log: str
    box: SceneBox
    near: float  # world units
    camera_names: list[str]  # appearance code k = camera_names[k]
    actors: list[str]  # actor field k models actor id actors[k]
    holdout: list[str] = field(default_factory=list)  # held-out image paths (relative to the log)
    config: dict = field(default_factory=dict)  # TrainConfig.to_json()
    step: int = 0
    elapsed: float = 0.0
    status: str = "training"  # training | complete | interrupted | diverged
    source_log_absolute: str = ""  # the log's absolute path when scene.json was written: the fallback

    def to_json(self) -> dict:
        d = asdict(self)
        d["box"] = self.box.to_json()
        head = {"source_log": d.pop("source_log"), "source_log_absolute": d.pop("source_log_absolute")}
        return {"format": SCENE_FORMAT, "version": SCENE_VERSION, **head, **d}


def log_reference(scene_dir: Path, log_path: Path) -> tuple[str, str]:
    """(``source_log``, ``source_log_absolute``) of ``log_path`` for a scene in ``scene_dir``: the path from the
    scene folder to the log (both resolved, so symbolic links and ``..`` in what the user typed do not matter) and
    the absolute one. On Windows a log on another drive has no relative path: both are then absolute."""
    absolute = Path(log_path).resolve()
    try:
        relative = Path(os.path.relpath(absolute, Path(scene_dir).resolve())).as_posix()
    except ValueError:
        relative = str(absolute)
    return relative, str(absolute)


def find_log(scene_dir: Path, info: SceneInfo, override: str | Path | None = None) -> Path:
    """The scene's drive log: ``override`` (``--log``) when given, else ``source_log`` from the scene folder, else
    the absolute fallback. None of them there is one ValueError line naming scene.json, the field and --log.
    The log is only read; nothing is ever written through these paths."""
    if override is not None:
        if not Path(override).exists():
            raise ValueError(f"--log {override}: no such file or folder")
        return Path(override)
    recorded = Path(info.source_log)
    candidates = [recorded if recorded.is_absolute() else Path(scene_dir) / recorded]
    if info.source_log_absolute:
        candidates.append(Path(info.source_log_absolute))
    found = next((c for c in candidates if c.exists()), None)
    if found is None:
        raise ValueError(f"{Path(scene_dir) / SCENE_FILE}: source_log: the drive log {info.source_log} is not found "
                         "(moved?); give its place with --log PATH")
    return found


def write_scene_info(scene_dir: Path, info: SceneInfo) -> None:
    """Write ``scene.json`` atomically; a failed write (a full disk) is one OSError line naming it."""
    path = Path(scene_dir) / SCENE_FILE
    try:
        atomic_write_text(path, json.dumps(info.to_json(), indent=1))
    except OSError as exc:
        raise write_failed(path, exc) from exc


def _number(data: dict, key: str, default: float | None = None, low: float = 0.0, strict: bool = False) -> float:
    value = data.get(key, default)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and (value > low if strict else value >= low)
    if not ok:
        raise ValueError(f"{key}: expected a finite number {'>' if strict else '>='} {low:g}, got {value!r}")
    return float(value)


def _strings(data: dict, key: str, required: bool = True) -> list[str]:
    value = data[key] if required else data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key}: expected a list of strings, got {value!r}"[:200])
    return list(value)


def _box(value: object) -> SceneBox:
    if not isinstance(value, dict):
        raise ValueError(f"box: expected {{'center': [x, y, z], 'half': [x, y, z]}}, got {value!r}"[:200])
    arrays = []
    for key in ("center", "half"):
        try:
            a = np.asarray(value[key], dtype=np.float64)
        except KeyError:
            raise ValueError(f"box.{key}: missing required key") from None
        except (TypeError, ValueError):
            a = np.zeros(0)
        if a.shape != (3,) or not np.isfinite(a).all() or (key == "half" and not (a > 0).all()):
            raise ValueError(f"box.{key}: expected 3 finite numbers{' > 0' if key == 'half' else ''}, "
                             f"got {value[key]!r}"[:200])
        arrays.append(a)
    return SceneBox(arrays[0], arrays[1])


def _log_paths(data: dict) -> tuple[str, str]:
    """``source_log`` and ``source_log_absolute``. A scene.json written before relative paths has only an absolute
    ``source_log``: that is then the fallback too."""
    source, absolute = data["source_log"], data.get("source_log_absolute", "")
    if not isinstance(source, str) or not source or "\0" in source:
        raise ValueError(f"source_log: expected the drive log's path, got {source!r}"[:200])
    if not isinstance(absolute, str) or "\0" in absolute or (absolute and not Path(absolute).is_absolute()):
        raise ValueError(f"source_log_absolute: expected an absolute path, got {absolute!r}"[:200])
    if not absolute and Path(source).is_absolute():
        absolute = source
    return source, absolute


def _parse(data: object) -> SceneInfo:
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    if data.get("format") != SCENE_FORMAT:
        raise ValueError(f"format: expected {SCENE_FORMAT!r}, got {data.get('format')!r}")
    if data.get("version") != SCENE_VERSION:
        raise ValueError(f"version: expected {SCENE_VERSION}, got {data.get('version')!r}")
    missing = next((k for k in ("source_log", "box", "near", "camera_names", "actors") if k not in data), None)
    if missing:
        raise ValueError(f"{missing}: missing required key")
    source, absolute = _log_paths(data)
    config, step, status = data.get("config", {}), data.get("step", 0), data.get("status", "")
    if not isinstance(config, dict):
        raise ValueError(f"config: expected an object, got {type(config).__name__}")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step: expected a count >= 0, got {step!r}")
    if not isinstance(status, str):
        raise ValueError(f"status: expected a string, got {status!r}")
    return SceneInfo(source_log=source, source_log_absolute=absolute, box=_box(data["box"]),
                     near=_number(data, "near", strict=True), camera_names=_strings(data, "camera_names"),
                     actors=_strings(data, "actors"), holdout=_strings(data, "holdout", required=False),
                     config=dict(config), step=step, elapsed=_number(data, "elapsed", 0.0), status=status)


def read_scene_info(scene_dir: Path) -> SceneInfo:
    """Read and check ``scene.json``; errors are one line naming the file and the field."""
    path = Path(scene_dir) / SCENE_FILE
    if not path.is_file():
        raise ValueError(f"{scene_dir}: not a scene folder (no {SCENE_FILE})")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise OSError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start}): not a scene.json") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: malformed JSON at line {exc.lineno}: {exc.msg}") from None
    except RecursionError:
        raise ValueError(f"{path}: malformed JSON: nested too deeply") from None
    try:
        return _parse(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def model_config(scene_dir: Path, info: SceneInfo) -> SceneModelConfig:
    """The scene model's configuration that ``scene.json`` records (``config.model``); errors name the file and
    the field. Keys another version wrote are warned about and dropped; missing keys take their defaults."""
    try:
        cfg = SceneModelConfig.from_json(info.config.get("model", {}))
        check_finite(cfg, "config.model")
        return cfg
    except ValueError as exc:
        raise ValueError(f"{Path(scene_dir) / SCENE_FILE}: {exc}") from None


def training_sweeps(log: DriveLog, holdout: set[str]) -> list:
    """Lidar sweeps a scene trains on: all but those taken when every camera frame is held out (kept for eval)."""
    held_times = {round(f.timestamp, 6) for f in log.frames if f.file_path in holdout}
    train_times = {round(f.timestamp, 6) for f in log.frames if f.file_path not in holdout}
    held_only = held_times - train_times
    return [s for s in log.lidar if round(s.timestamp, 6) not in held_only]


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when there is a GPU), ``cpu`` or ``cuda``; ValueError naming --device otherwise."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"--device: expected auto, cpu or cuda, got {name!r}")
    return torch.device(name)
