"""A reconstructed scene folder as a RenderableScene (the contract in simrecon.data.scene_api)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from ..data.io import load_log
from ..data.model import DriveLog, Frame, Intrinsics
from ..data.shutter import frame_motions
from ..data.lidar_model import LidarSensor
from ..data.scene_api import OUTPUTS, ActorPlacement, LidarOutput, RenderOutput
from ..render import SceneModel
from ..render.fast import FastRenderer
from ..render.image import ImageOutput, RayRenderer, render_image
from ..render.rays import ShutterMotion
from .checkpoint import load_model_state, load_weights
from .folder import MODEL_FILE, SceneInfo, find_log, model_config, read_scene_info, resolve_device
from .occupancy_file import occupancy_for

RENDERERS = ("fast", "reference")  # fast: render/fast.py over occupancy grids; reference: the training path


class NeuralScene:
    """A trained SceneModel with the drive log it came from."""

    def __init__(self, scene_dir: Path, info: SceneInfo, model: SceneModel, log: DriveLog, renderer: str = "fast"):
        self.scene_dir = Path(scene_dir)
        self.info = info
        self.model = model
        self._log = log
        self.renderer = check_renderer(renderer)
        self._fast: FastRenderer | None = None
        self._motions: dict[str, np.ndarray] | None = None

    def ray_renderer(self) -> tuple[RayRenderer, int]:
        """What renders this scene's rays, and how many per batch: the fast renderer over the scene's occupancy
        grids (read from, or built once into, ``occupancy.pt``), or the model itself with ``reference``."""
        if self.renderer == "reference":
            return self.model, 8192
        if self._fast is None:
            self._fast = FastRenderer(self.model, occupancy_for(self.scene_dir, self.model))
        return self._fast, self._fast.cfg.chunk

    @property
    def log(self) -> DriveLog:
        return self._log

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def appearance_for(self, camera: str) -> int:
        """Appearance code of a logged camera; new cameras borrow the first camera's."""
        names = self.info.camera_names
        return names.index(camera) if camera in names else 0

    def field_index(self, actor_id: str) -> int:
        try:
            return self.info.actors.index(actor_id)
        except ValueError:
            known = ", ".join(self.info.actors) or "none"
            raise KeyError(f"no actor {actor_id!r} in scene {self.scene_dir} (actors: {known})") from None

    def render_image(self, c2w: np.ndarray, intr: Intrinsics, time: float, camera: str = "",
                     placements: Mapping[str, ActorPlacement] | None = None, chunk: int | None = None,
                     refine: bool = True, shutter: ShutterMotion | None = None) -> ImageOutput:
        """Render one camera; ``placements`` None draws the actors as logged at ``time``. ``chunk``: rays per
        batch (default: the renderer's). ``c2w`` is a pose in the log's frame, corrected as training refined the
        log's cameras at ``time`` (``refined``); ``refine=False`` renders it as given (a pose already in the
        scene's frame, such as a synthetic street's exact ground truth). ``shutter``: render as a rolling-shutter
        frame (``shutter_for``); None: every pixel at ``time`` (a global shutter)."""
        placed = self.placed(placements, time) if placements is not None else None
        renderer, default_chunk = self.ray_renderer()
        pose = self.refined(c2w, time) if refine else np.asarray(c2w)
        return render_image(self.model, pose, intr, time, self.appearance_for(camera), self.info.near,
                            placed, chunk=chunk or default_chunk, exposure=self.exposure_for(camera, time),
                            renderer=renderer, shutter=shutter)

    def placed(self, placements: Mapping[str, ActorPlacement], time: float) -> list[tuple[int, np.ndarray]]:
        """(actor field index, box-to-world pose) of each placement, the pose corrected as training refined its
        source actor's track at ``time`` (render/track_refine.py; as given when the scene has no track
        corrections)."""
        out = []
        for p in placements.values():
            k = self.field_index(p.source)
            pose = np.asarray(p.pose, dtype=float)
            if self.model.track_fix is not None:
                pose = pose @ self.model.track_fix.matrix_at(k, time)
            out.append((k, pose))
        return out

    def shutter_for(self, frame: Frame) -> ShutterMotion | None:
        """How a logged frame was exposed, when its camera has a rolling shutter (drive-log v1.2) and the scene was
        trained with ``sampling.rolling_shutter``: each pixel's time and the camera's motion (estimated from its
        neighbouring frames, as training did); None for a global shutter."""
        rs = frame.rolling_shutter
        if rs is None or rs.readout_s <= 0 or not self.info.config.get("sampling", {}).get("rolling_shutter", True):
            return None
        if self._motions is None:
            self._motions = frame_motions(self.log.cameras)
        motion = self._motions.get(frame.file_path)
        if motion is None:
            return None
        offsets = rs.offsets(frame.intrinsics.w, frame.intrinsics.h).reshape(-1)
        return ShutterMotion(torch.as_tensor(offsets, dtype=torch.float64), torch.as_tensor(motion))

    def refined(self, c2w: np.ndarray, time: float) -> np.ndarray:
        """A camera-to-world pose [4, 4] given in the log's frame at ``time``, corrected as training refined the
        log's cameras at that time (render/pose_refine.py: interpolated between the nearest trained rig times);
        ``c2w`` itself when the scene has no pose corrections."""
        if self.model.poses is None:
            return np.asarray(c2w)
        return self.model.poses.matrix_at(float(time)) @ np.asarray(c2w, dtype=np.float64)

    def exposure_for(self, camera: str, time: float) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(gain [3], offset [3]) of a logged camera at ``time`` when the scene models per-frame exposure (see
        render/exposure.py); None otherwise: other cameras see the scene at its average exposure."""
        names = self.info.camera_names
        if self.model.exposure is None or camera not in names:
            return None
        return self.model.exposure.at(names.index(camera), time)

    def render_lidar(self, sensor: LidarSensor, s2w: np.ndarray, time: float,
                     placements: Mapping[str, ActorPlacement]) -> LidarOutput:
        """The sensor's sweep through this scene's renderer (scene/lidar.py): range and drop from depth and
        opacity, instance ids; intensity None (not modelled yet)."""
        from .lidar import render_sweep

        return render_sweep(self, sensor, s2w, time, placements)

    def render(self, c2w: np.ndarray, intrinsics: Intrinsics, time: float,
               placements: Mapping[str, ActorPlacement], outputs: Sequence[str] = OUTPUTS) -> RenderOutput:
        img = self.render_image(c2w, intrinsics, time, placements=placements)
        return RenderOutput(
            rgb=img.rgb if "rgb" in outputs else None,
            depth=img.depth if "depth" in outputs else None,
            instance=img.instance if "instance" in outputs else None,
            instance_names=list(placements),
        )


def check_renderer(name: str) -> str:
    if name not in RENDERERS:
        raise ValueError(f"--renderer: expected {' or '.join(RENDERERS)}, got {name!r}")
    return name


def load_scene(scene_dir: str | Path, device: str = "auto", log: str | Path | None = None,
               renderer: str = "fast") -> NeuralScene:
    """Open a scene folder written by ``simrecon reconstruct``. Whatever is wrong with it (scene.json, the
    weights, a model.pt that is not a weights file or is another model's) is one ValueError line naming the
    file; ``model.pt`` is read with ``weights_only=True``. The drive log is ``log`` when given (``--log``: the
    log moved), else the one scene.json records (``folder.find_log``). ``renderer``: ``fast`` (default) or
    ``reference`` (``RENDERERS``)."""
    check_renderer(renderer)
    scene_dir = Path(scene_dir)
    info = read_scene_info(scene_dir)
    log_path = find_log(scene_dir, info, log)  # before the weights: a missing log is the more likely trouble
    weights = scene_dir / MODEL_FILE
    if not weights.exists():
        raise ValueError(f"{scene_dir}: no {MODEL_FILE} (training never finished; --resume continues it)")
    cfg = model_config(scene_dir, info)
    dev = resolve_device(device)
    state = load_weights(weights, "cpu")
    log = load_log(log_path)
    frames = None
    # the weights say whether the scene has per-frame exposure (both tensors, or load_model_state names the one)
    cfg.frame_exposure = "exposure.cameras" in state and "exposure.times" in state
    if cfg.frame_exposure:
        frames = (state["exposure.cameras"], state["exposure.times"])
    # camera pose corrections: in the weights of scenes trained with them; older scenes have none (the log's poses)
    rig = (state["poses.times"], state["poses.pivots"]) if "poses.times" in state and "poses.pivots" in state \
        else None
    try:
        model = SceneModel(cfg, info.box, log.actors, len(info.camera_names), frames=frames, rig=rig,
                           refine_tracks="track_fix.trans" in state)
    except (ValueError, TypeError, RuntimeError, IndexError) as exc:
        raise ValueError(f"{weights}: does not fit the model its scene.json describes "
                         f"({exc.__class__.__name__}: {(str(exc).splitlines() or [''])[0]})") from None
    load_model_state(model, state, weights)
    model.to(dev).eval()
    return NeuralScene(scene_dir, info, model, log, renderer)
