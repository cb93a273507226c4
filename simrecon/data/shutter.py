"""Rolling shutter: when each pixel of an image was exposed (drive-log v1.2, docs/drive-log.md).

A rolling-shutter camera reads its sensor out line by line: the first line is exposed ``readout_s`` seconds before
the last. On a moving car each line therefore sees the world from a slightly different pose (10 m/s and a 30 ms
readout: 30 cm between the top and the bottom of one image). The convention of the format: a frame's
``timestamp`` and ``transform_matrix`` are the camera's at the middle of the readout, so a pixel whose line is
read a share ``f`` (0..1) of the way through the readout was exposed ``(f - 0.5) * readout_s`` seconds after the
frame's timestamp.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Which way the readout sweeps the image: the share of the readout done when a pixel (u, v) is read is
# (v + 0.5) / H for top_to_bottom, and so on.
DIRECTIONS = ("top_to_bottom", "bottom_to_top", "left_to_right", "right_to_left")


@dataclass(frozen=True)
class RollingShutter:
    readout_s: float  # seconds from the first line's exposure to the last's (0: a global shutter)
    direction: str = "top_to_bottom"  # one of DIRECTIONS

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"rolling shutter direction: expected one of {', '.join(DIRECTIONS)}, "
                             f"got {self.direction!r}")
        if not (self.readout_s >= 0 and np.isfinite(self.readout_s)):
            raise ValueError(f"rolling shutter readout_s: expected seconds >= 0, got {self.readout_s!r}")

    def to_json(self) -> dict:
        return {"readout_s": float(self.readout_s), "direction": self.direction}

    def offsets(self, w: int, h: int) -> np.ndarray:
        """[H, W] seconds from the frame's timestamp (the middle of the readout) to each pixel's exposure."""
        vertical = self.direction in ("top_to_bottom", "bottom_to_top")
        n = h if vertical else w
        share = (np.arange(n) + 0.5) / n
        if self.direction in ("bottom_to_top", "right_to_left"):
            share = 1.0 - share
        dt = (share - 0.5) * self.readout_s
        return np.broadcast_to(dt[:, None] if vertical else dt[None, :], (h, w)).copy()


def rotation_log(rot: np.ndarray) -> np.ndarray:
    """Axis-angle vector [3] of a rotation matrix [3, 3] (angle < pi)."""
    cos = np.clip((np.trace(rot) - 1.0) / 2.0, -1.0, 1.0)
    angle = float(np.arccos(cos))
    axis = np.array([rot[2, 1] - rot[1, 2], rot[0, 2] - rot[2, 0], rot[1, 0] - rot[0, 1]])
    return axis / 2.0 if angle < 1e-8 else axis * (angle / (2.0 * np.sin(angle)))


def rotation_exp(omega: np.ndarray) -> np.ndarray:
    """Rotation matrix [3, 3] of an axis-angle vector [3] (Rodrigues)."""
    angle = float(np.linalg.norm(omega))
    k = np.array([[0.0, -omega[2], omega[1]], [omega[2], 0.0, -omega[0]], [-omega[1], omega[0], 0.0]])
    if angle < 1e-12:
        return np.eye(3) + k
    k /= angle
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)


def camera_motion(c2w: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Each frame's motion [F, 6] in its own camera axes: linear (m/s) then angular (rad/s) velocity, from one
    camera's frames (poses [F, 4, 4] and times [F], in time order): the relative pose from the previous to the
    next frame over their time apart (one side at the ends; zero for a camera with a single frame), taken as one
    constant motion: exact for the rotation, the chord for the arc in translation (0.02 % short for a 0.1 rad
    turn), ample for the few centimetres a readout spans."""
    f = len(times)
    out = np.zeros((f, 6))
    for i in range(f):
        a, b = max(i - 1, 0), min(i + 1, f - 1)
        span = float(times[b] - times[a])
        if a == b or span <= 0:
            continue
        rel = np.linalg.inv(c2w[a]) @ c2w[b]  # frame b in frame a's axes
        turn = rotation_log(rel[:3, :3])
        # A constant motion (in the camera's own axes) moves along the chord in the axes half-way through the turn
        out[i, :3] = rotation_exp(-turn / 2) @ rel[:3, 3] / span
        out[i, 3:] = turn / span
    return out


def shutter_pose(c2w: np.ndarray, motion: np.ndarray, dt: float) -> np.ndarray:
    """The camera pose [4, 4] ``dt`` seconds after ``c2w`` [4, 4], moving with ``motion`` [6] (camera axes)."""
    step = np.eye(4)
    step[:3, :3] = rotation_exp(motion[3:] * dt)
    step[:3, 3] = motion[:3] * dt
    return c2w @ step


def frame_motions(cameras: dict[str, list]) -> dict[str, np.ndarray]:
    """``camera_motion`` of every frame of a log (``DriveLog.cameras``: camera -> its frames in time order), by
    the frame's ``file_path``."""
    out: dict[str, np.ndarray] = {}
    for frames in cameras.values():
        motion = camera_motion(np.stack([f.c2w for f in frames]), np.array([f.timestamp for f in frames]))
        out.update({f.file_path: m for f, m in zip(frames, motion)})
    return out
