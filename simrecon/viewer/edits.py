"""Actor edits made in the viewer, as a scenario (docs/scenarios.md) the composer renders unchanged.

The viewer keeps a base scenario (empty, or the file given with ``--scenario`` / loaded in the GUI) and
per-actor edits: remove, or move (``translate`` in the box frame) and rotate (``rotate`` yaw/pitch/roll in
degrees), exactly the composer's ``actors[i]`` keys. The preview resolves the merged scenario with the
composer's own ``resolve``, so what the viewer shows is what ``simrecon compose`` renders.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from ..compose.scenario import Plan, ScenarioSpec, parse_scenario, resolve
from ..data.geometry import invert_pose
from ..data.scene_api import ActorPlacement, RenderableScene


@dataclass
class ActorEdit:
    remove: bool = False
    translate: tuple[float, float, float] = (0.0, 0.0, 0.0)  # box frame: x forward, y left, z up
    rotate: tuple[float, float, float] = (0.0, 0.0, 0.0)  # yaw, pitch, roll in degrees

    @property
    def is_identity(self) -> bool:
        return not self.remove and not any(self.translate) and not any(self.rotate)

    @classmethod
    def from_local(cls, local: np.ndarray) -> "ActorEdit":
        """The edit whose box-frame transform is ``local`` = T(translate) R(yaw, pitch, roll)."""
        r = local[:3, :3]
        pitch = math.degrees(math.asin(float(np.clip(r[2, 0], -1.0, 1.0))))
        yaw = math.degrees(math.atan2(r[1, 0], r[0, 0]))
        roll = math.degrees(math.atan2(r[2, 1], r[2, 2]))
        t = tuple(round(float(x), 4) for x in local[:3, 3])
        return cls(False, t, (round(yaw, 3), round(pitch, 3), round(roll, 3)))  # type: ignore[arg-type]


def local_edit(logged_pose: np.ndarray, new_pose: np.ndarray) -> ActorEdit:
    """The edit that moves a box from ``logged_pose`` to ``new_pose`` (both box-to-world)."""
    return ActorEdit.from_local(invert_pose(logged_pose) @ new_pose)


@dataclass
class EditSession:
    """The scene, the base scenario and the viewer's edits; ``plan()`` is the composer's view of them."""

    scene: RenderableScene
    scene_path: Path
    base: dict = field(default_factory=dict)  # scenario keys (without ``scene``), as in a file
    base_file: Path | None = None
    edits: dict[str, ActorEdit] = field(default_factory=dict)

    # -- loading --------------------------------------------------------------------------------------------
    def load(self, path: str | Path) -> None:
        """Take a scenario file as the base (its scene must be this one: only its edits are used)."""
        path = Path(path)
        spec = parse_scenario(path)
        data = spec.model_dump(mode="json", exclude_defaults=True)
        data.pop("scene", None)
        edits: dict[str, ActorEdit] = {}
        keep = []
        for a in data.get("actors", []):
            simple = a.get("source") is None and set(a) <= {"id", "remove", "translate", "rotate"}
            if simple:
                rot = a.get("rotate", {})
                edits[a["id"]] = ActorEdit(bool(a.get("remove", False)), tuple(a.get("translate", (0.0, 0.0, 0.0))),
                                           (rot.get("yaw", 0.0), rot.get("pitch", 0.0), rot.get("roll", 0.0)))
            else:
                keep.append(a)
        data["actors"] = keep
        self.base, self.base_file, self.edits = data, path, edits
        self.plan()  # validate against this scene now: one-line ScenarioError

    # -- the merged scenario ----------------------------------------------------------------------------------
    def scenario_dict(self, scene_ref: str) -> dict:
        """The merged scenario as YAML-ready data; ``scene_ref`` is its ``scene:`` value."""
        data = {k: v for k, v in self.base.items()}
        out: dict = {"version": 1}
        if "name" in data:
            out["name"] = data.pop("name")
        if "description" in data:
            out["description"] = data.pop("description")
        out["scene"] = scene_ref
        data.pop("version", None)
        actors = [dict(a) for a in data.pop("actors", [])]
        by_id = {a["id"]: a for a in actors}
        for actor_id, e in self.edits.items():
            if e.is_identity:
                continue
            entry = by_id.get(actor_id)
            if entry is None:
                entry = {"id": actor_id}
                actors.append(entry)
                by_id[actor_id] = entry
            if e.remove:
                for k in ("translate", "rotate", "speed", "time_offset", "trajectory"):
                    entry.pop(k, None)
                entry["remove"] = True
                continue
            entry.pop("remove", None)
            if any(e.translate):
                entry["translate"] = [float(x) for x in e.translate]
            else:
                entry.pop("translate", None)
            if any(e.rotate):
                entry["rotate"] = {"yaw": float(e.rotate[0]), "pitch": float(e.rotate[1]), "roll": float(e.rotate[2])}
            else:
                entry.pop("rotate", None)
        out.update(data)
        if actors:
            out["actors"] = actors
        return out

    def plan(self) -> Plan:
        """Resolve the merged scenario against the open scene with the composer's own resolver."""
        data = self.scenario_dict(str(self.scene_path))
        spec = ScenarioSpec.model_validate(data)
        file = self.base_file or Path("<viewer edits>")
        return resolve(spec, self.scene, file, self.scene_path)

    def placements(self, plan: Plan, t: float) -> dict[str, ActorPlacement]:
        out = {}
        for a in plan.actors:
            pose = a.pose_at(t)
            if pose is not None:
                out[a.id] = ActorPlacement(a.source, pose)
        return out

    # -- saving ---------------------------------------------------------------------------------------------
    def save(self, path: str | Path, name: str | None = None) -> Path:
        """Write the merged scenario; its ``scene:`` is relative to the file's folder when possible."""
        path = Path(path)
        if path.suffix.lower() not in (".yaml", ".yml"):
            path = path.with_suffix(".yaml")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            ref = os.path.relpath(self.scene_path.resolve(), path.parent.resolve())
        except ValueError:  # another drive on Windows
            ref = str(self.scene_path.resolve())
        data = self.scenario_dict(Path(ref).as_posix())
        if name:
            data = {"version": 1, "name": name, **{k: v for k, v in data.items() if k not in ("version", "name")}}
        ScenarioSpec.model_validate(data)  # never write a file compose would refuse by schema
        text = "# written by simrecon view (docs/viewer.md); render with: simrecon compose THIS_FILE -o OUT\n"
        text += yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        return path
