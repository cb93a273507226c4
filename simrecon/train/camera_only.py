"""The camera-only recipe: what training adds when no lidar sweep is trained on (``priors.camera_only``).

With lidar, the lidar losses say where space is empty and where the surfaces are, the lidar prior starts the
field at them, the free columns keep the street open up to the box's top, and the returns shape the scene box.
A log without lidar (KITTI odometry's images, a nerfstudio capture, a camera-only rig) has none of that: only
the photometric loss and the proposal's interlevel loss shape the density, and a ray may spread its weight as
semi-transparent fog along its length where several views happen to agree. What already holds without lidar:
the density starts nearly transparent (``model.background.density_bias``), the scene box and the near plane
come from the cameras' path (``data.scene_box``, ``sampling.near_frac`` of its size).

The recipe adds mip-NeRF 360's distortion loss on the camera rays: it pulls each ray's weights into few, short
intervals (one surface), the prior lidar gives a driving log, in the spacing function's coordinates (linear in
the box, disparity beyond), so far samples do not dominate it. ``mode`` auto turns it on when the run trains on
no lidar sweep; the decision is printed at the start and recorded in scene.json (``priors.camera_only.mode``
on or off), so a resumed run keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config_io import doc
from ..render.composite import distortion_loss
from ..render.samplers import spacing

MODES = ("auto", "on", "off")


@dataclass
class CameraOnlyConfig:
    mode: str = doc("auto", "the camera-only recipe: auto (on when the run trains on no lidar sweep), on or off",
                    unit="-")
    # 500 fast steps without lidar, 0.01 / 0.002 against off: street +2 m +0.68 / +0.37 dB, held out -0.09 / +0.05;
    # KITTI held out -0.47 / -0.09 dB (docs/reconstruction.md)
    distortion_weight: float = doc(0.002, "with the recipe on: mip-NeRF 360's distortion loss on the camera rays' "
                                          "weights (spacing coordinates)", unit="factor")

    def check(self, where: str = "config.priors.camera_only") -> None:
        if self.mode not in MODES:
            raise ValueError(f"{where}.mode: expected auto, on or off, got {self.mode!r}")
        if not self.distortion_weight >= 0:
            raise ValueError(f"{where}.distortion_weight: must be a finite number >= 0, got {self.distortion_weight}")


def camera_only_decision(cfg: CameraOnlyConfig, has_lidar: bool) -> tuple[bool, str]:
    """(the recipe on or not, why, in one line) for a fresh run; ``has_lidar``: the run trains on lidar sweeps."""
    if cfg.mode != "auto":
        return cfg.mode == "on", f"priors.camera_only.mode={cfg.mode}"
    if has_lidar:
        return False, "auto: the log has lidar"
    return True, f"auto: no lidar sweep to train on; distortion loss {cfg.distortion_weight:g}"


def ray_distortion(mids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Distortion loss (``render.composite.distortion_loss``) of rays whose samples sit at normalised distances
    ``mids`` [R, S] (sorted) with compositing weights ``weights`` [R, S]: in spacing coordinates, each sample's
    interval reaching halfway to its neighbours (the first and last as long as their neighbour's half)."""
    s = spacing(mids)
    if s.shape[1] < 2:
        return s.new_zeros(())
    inner = (s[:, 1:] + s[:, :-1]) / 2
    first = s[:, :1] - (inner[:, :1] - s[:, :1])
    last = s[:, -1:] + (s[:, -1:] - inner[:, -1:])
    return distortion_loss(torch.cat([first, inner, last], 1), weights)
