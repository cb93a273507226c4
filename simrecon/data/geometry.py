"""Rigid-transform helpers shared by the log model, readers and generators.

Conventions (see docs/drive-log.md):
- world: right-handed, z up, metres;
- camera (OpenGL / nerfstudio): x right, y up, looking along -z;
- camera (OpenCV, used by most datasets): x right, y down, looking along +z;
- vehicle and actor box frames: x forward, y left, z up.
Quaternions are (w, x, y, z), Hamilton, active.
"""

from __future__ import annotations

import numpy as np

# Right-multiplying a camera-to-world matrix by this swaps OpenCV <-> OpenGL camera axes (its own inverse).
CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])


def opencv_to_opengl(c2w: np.ndarray) -> np.ndarray:
    """Camera-to-world [..., 4, 4] with OpenCV camera axes -> OpenGL camera axes."""
    return c2w @ CV_TO_GL


def opengl_to_opencv(c2w: np.ndarray) -> np.ndarray:
    """Camera-to-world [..., 4, 4] with OpenGL camera axes -> OpenCV camera axes."""
    return c2w @ CV_TO_GL


def make_pose(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """4x4 rigid transform from R [3, 3] and t [3]."""
    pose = np.eye(4)
    pose[:3, :3] = rotation
    pose[:3, 3] = translation
    return pose


def invert_pose(pose: np.ndarray) -> np.ndarray:
    """Inverse of rigid transforms [..., 4, 4] (no general matrix inverse: keeps R orthonormal)."""
    rot = pose[..., :3, :3]
    out = np.zeros_like(pose)
    rt = np.swapaxes(rot, -1, -2)
    out[..., :3, :3] = rt
    out[..., :3, 3] = -(rt @ pose[..., :3, 3:4])[..., 0]
    out[..., 3, 3] = 1.0
    return out


def transform_points(pose: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to points [N, 3]."""
    return points @ pose[:3, :3].T + pose[:3, 3]


def rot_x(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=float)


def rot_y(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=float)


def rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=float)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """(w, x, y, z) quaternions [..., 4] -> rotation matrices [..., 3, 3]; q need not be unit."""
    q = np.asarray(q, dtype=float)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def matrix_to_quat(rot: np.ndarray) -> np.ndarray:
    """Rotation matrices [..., 3, 3] -> unit (w, x, y, z) quaternions [..., 4] with w >= 0.

    Uses the largest-diagonal branch per matrix so it stays accurate near 180-degree rotations.
    """
    rot = np.asarray(rot, dtype=float)
    flat = rot.reshape(-1, 3, 3)
    out = np.empty((flat.shape[0], 4))
    for i, m in enumerate(flat):
        tr = m[0, 0] + m[1, 1] + m[2, 2]
        if tr > 0:
            s = 2.0 * np.sqrt(tr + 1.0)
            q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
        elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
            s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
            q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
        elif m[1, 1] > m[2, 2]:
            s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
            q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
        else:
            s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
            q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
        q = np.asarray(q)
        q /= np.linalg.norm(q)
        out[i] = -q if q[0] < 0 else q
    return out.reshape(rot.shape[:-2] + (4,))


def slerp(q0: np.ndarray, q1: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Spherical interpolation of unit quaternions [..., 4] along the shorter arc; alpha [...] in [0, 1]."""
    q0 = np.asarray(q0, dtype=float)
    q1 = np.asarray(q1, dtype=float)
    alpha = np.asarray(alpha, dtype=float)[..., None]
    dot = np.sum(q0 * q1, axis=-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)  # q and -q are the same rotation: take the short way
    dot = np.abs(dot)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin_theta = np.sin(theta)
    # Nearly parallel quaternions: sin(theta) ~ 0, fall back to normalised lerp.
    near = sin_theta < 1e-6
    safe = np.where(near, 1.0, sin_theta)
    w0 = np.where(near, 1.0 - alpha, np.sin((1.0 - alpha) * theta) / safe)
    w1 = np.where(near, alpha, np.sin(alpha * theta) / safe)
    q = w0 * q0 + w1 * q1
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def rotation_error(rot: np.ndarray) -> tuple[float, float]:
    """How far [3, 3] is from a proper rotation: (max |R^T R - I|, det R)."""
    ortho = float(np.max(np.abs(rot.T @ rot - np.eye(3))))
    return ortho, float(np.linalg.det(rot))
