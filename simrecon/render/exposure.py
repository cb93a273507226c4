"""Per-frame exposure: a gain and an offset per colour channel for every training frame.

Real cameras change exposure and white balance from frame to frame (auto-exposure driving into shade or out of a
tunnel). Without a model of it the field bakes each frame's brightness into the scene, and frames disagree. The
correction acts on the composited colour, ``rgb * exp(log_gain) + offset``, so it cannot hold scene content.
Its global level is fixed: the log gains and offsets are used minus their mean over the frames, so the scene
keeps the average exposure and the corrections only say how a frame differs from it.

A frame that was not trained on (held out, or a new pose at a logged time) takes the correction interpolated in
time between the nearest training frames of its camera; a camera the log never had takes none.

Whether a scene has it is ``SceneModelConfig.frame_exposure``: ``auto`` (training measures the log and decides,
train/exposure_auto.py), ``on`` or ``off``. Scenes written when it was a switch say ``true`` / ``false``
(``exposure_mode`` reads them as on / off).
"""

from __future__ import annotations

import torch
from torch import nn

MODES = ("auto", "on", "off")


def exposure_mode(value: object, where: str = "model.frame_exposure") -> str:
    """``auto``, ``on`` or ``off`` from a ``frame_exposure`` setting; ``True`` / ``False`` (scenes written when it
    was a switch, or Python callers) are on / off. ValueError naming ``where`` otherwise."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value not in MODES:
        raise ValueError(f"{where}: expected auto, on or off, got {value!r}"[:200])
    return str(value)


def legacy_exposure(model: object) -> object:
    """A ``model`` section of a recorded configuration with a switch-valued ``frame_exposure`` (true / false)
    turned into on / off; anything else is returned as it is (``from_dict`` names what is wrong)."""
    if isinstance(model, dict) and isinstance(model.get("frame_exposure"), bool):
        return {**model, "frame_exposure": exposure_mode(model["frame_exposure"])}
    return model


class FrameExposure(nn.Module):
    """Corrections for K training frames, each of a camera (appearance index) at a time."""

    def __init__(self, cameras: torch.Tensor, times: torch.Tensor):
        super().__init__()
        if cameras.ndim != 1 or times.shape != cameras.shape:
            raise ValueError(f"FrameExposure: cameras {list(cameras.shape)} and times {list(times.shape)} must "
                             f"both be [K]")
        k = cameras.shape[0]
        self.register_buffer("cameras", cameras.long().clone())  # [K]
        self.register_buffer("times", times.double().clone())  # [K] seconds
        self.log_gain = nn.Parameter(torch.zeros(k, 3))  # [K, 3]
        self.offset = nn.Parameter(torch.zeros(k, 3))  # [K, 3]

    def __len__(self) -> int:
        return self.cameras.shape[0]

    def _centred(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(log gain, offset) [K, 3] each, minus their mean over the frames (the scene holds the mean)."""
        return self.log_gain - self.log_gain.mean(0), self.offset - self.offset.mean(0)

    def forward(self, rgb: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Colours [N, 3] of rays from training frames [N] (indices 0..K-1) -> corrected colours [N, 3]."""
        if rgb.ndim != 2 or rgb.shape[1] != 3 or frames.shape != rgb.shape[:1]:
            raise ValueError(f"FrameExposure: expected colours [N, 3] and frames [N], got {list(rgb.shape)} and "
                             f"{list(frames.shape)}")
        gain, offset = self._centred()
        return rgb * torch.exp(gain[frames]) + offset[frames]

    @torch.no_grad()
    def at(self, camera: int, time: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(gain [3], offset [3]) of ``camera`` at ``time``: linear in time between its two nearest training
        frames, the nearest one's outside their span; the identity (ones, zeros) for a camera without frames."""
        gain, offset = self._centred()
        mine = (self.cameras == camera).nonzero()[:, 0]
        if not len(mine):
            return torch.ones(3, device=gain.device), torch.zeros(3, device=gain.device)
        t, order = torch.sort(self.times[mine])
        mine = mine[order]
        hi = int(torch.searchsorted(t, t.new_tensor([time]))[0].clamp(1, len(t) - 1)) if len(t) > 1 else 0
        lo = max(hi - 1, 0)
        span = float(t[hi] - t[lo])
        a = min(max((time - float(t[lo])) / span, 0.0), 1.0) if span > 0 else 0.0
        g = torch.lerp(gain[mine[lo]], gain[mine[hi]], a)
        return torch.exp(g), torch.lerp(offset[mine[lo]], offset[mine[hi]], a)
