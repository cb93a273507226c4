"""``SCENE/scene.json``: what a reconstructed scene is made of (docs/scene-format.md)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..data.io import atomic_write_text
from ..fields import SceneBox

SCENE_FORMAT = "simrecon-scene"
SCENE_VERSION = 1
MODEL_FILE = "model.pt"


@dataclass
class SceneInfo:
    source_log: str  # absolute path of the drive log it was trained on
    box: SceneBox
    near: float  # world units
    camera_names: list[str]  # appearance code k = camera_names[k]
    actors: list[str]  # actor field k models actor id actors[k]
    holdout: list[str] = field(default_factory=list)  # held-out image paths (relative to the log)
    config: dict = field(default_factory=dict)  # TrainConfig.to_json()
    step: int = 0
    elapsed: float = 0.0
    status: str = "training"  # training | complete | interrupted | diverged

    def to_json(self) -> dict:
        d = asdict(self)
        d["box"] = self.box.to_json()
        return {"format": SCENE_FORMAT, "version": SCENE_VERSION, **d}


def write_scene_info(scene_dir: Path, info: SceneInfo) -> None:
    atomic_write_text(Path(scene_dir) / "scene.json", json.dumps(info.to_json(), indent=1))


def read_scene_info(scene_dir: Path) -> SceneInfo:
    """Read and check ``scene.json``; errors name the file and the field."""
    path = Path(scene_dir) / "scene.json"
    if not path.is_file():
        raise ValueError(f"{scene_dir}: not a scene folder (no scene.json)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: malformed JSON at line {exc.lineno}: {exc.msg}") from None
    if data.get("format") != SCENE_FORMAT:
        raise ValueError(f"{path}: format: expected {SCENE_FORMAT!r}, got {data.get('format')!r}")
    if data.get("version") != SCENE_VERSION:
        raise ValueError(f"{path}: version: expected {SCENE_VERSION}, got {data.get('version')!r}")
    try:
        return SceneInfo(source_log=data["source_log"], box=SceneBox.from_json(data["box"]), near=float(data["near"]),
                         camera_names=list(data["camera_names"]), actors=list(data["actors"]),
                         holdout=list(data.get("holdout", [])), config=dict(data.get("config", {})),
                         step=int(data.get("step", 0)), elapsed=float(data.get("elapsed", 0.0)),
                         status=str(data.get("status", "")))
    except KeyError as exc:
        raise ValueError(f"{path}: {exc.args[0]}: missing required key") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
