"""Rays from cameras (through pixel centres, lens distortion removed) and from lidar returns."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from ..data.model import Intrinsics


@dataclass
class Rays:
    """A batch of R rays. Distances are in world units."""

    origins: torch.Tensor  # [R, 3]
    dirs: torch.Tensor  # [R, 3] unit
    times: torch.Tensor  # [R] float64 seconds (poses actors)
    appearance: torch.Tensor  # [R] long: appearance code (camera / frame)
    near: torch.Tensor  # [R]
    view_cos: torch.Tensor  # [R] cosine to the camera's view axis: ray distance -> depth along the axis

    def __len__(self) -> int:
        return self.origins.shape[0]

    def __getitem__(self, idx) -> "Rays":
        return Rays(*(getattr(self, f.name)[idx] for f in fields(self)))

    def to(self, device: torch.device | str) -> "Rays":
        return Rays(*(getattr(self, f.name).to(device) for f in fields(self)))

    @staticmethod
    def cat(parts: list["Rays"]) -> "Rays":
        return Rays(*(torch.cat([getattr(p, f.name) for p in parts]) for f in fields(Rays)))


def _undistort(xd: np.ndarray, yd: np.ndarray, intr: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Normalised distorted image coordinates -> undistorted ones (fixed-point / Newton iterations)."""
    if not intr.has_distortion or intr.model == "PINHOLE":
        return xd, yd
    if intr.model == "OPENCV_FISHEYE":
        rd = np.sqrt(xd * xd + yd * yd)
        theta = rd.copy()
        k1, k2, k3, k4 = intr.k1, intr.k2, intr.k3, intr.k4
        for _ in range(20):  # Newton on theta * (1 + k1 t^2 + ...) = rd
            t2 = theta * theta
            f = theta * (1 + k1 * t2 + k2 * t2**2 + k3 * t2**3 + k4 * t2**4) - rd
            df = 1 + 3 * k1 * t2 + 5 * k2 * t2**2 + 7 * k3 * t2**3 + 9 * k4 * t2**4
            theta = theta - f / df
        scale = np.where(rd > 1e-12, np.tan(theta) / np.maximum(rd, 1e-12), 1.0)
        return xd * scale, yd * scale
    x, y = xd.copy(), yd.copy()
    for _ in range(20):  # fixed point of OpenCV's radial-tangential model, as cv2.undistortPoints does
        r2 = x * x + y * y
        radial = 1 + intr.k1 * r2 + intr.k2 * r2**2 + intr.k3 * r2**3
        dx = 2 * intr.p1 * x * y + intr.p2 * (r2 + 2 * x * x)
        dy = intr.p1 * (r2 + 2 * y * y) + 2 * intr.p2 * x * y
        x = (xd - dx) / radial
        y = (yd - dy) / radial
    return x, y


def camera_directions(intr: Intrinsics) -> torch.Tensor:
    """Unit ray directions [H, W, 3] in OpenGL camera axes through every pixel centre, distortion removed."""
    u = np.arange(intr.w) + 0.5
    v = np.arange(intr.h) + 0.5
    uu, vv = np.meshgrid(u, v)
    x, y = _undistort((uu - intr.cx) / intr.fl_x, (vv - intr.cy) / intr.fl_y, intr)
    d = np.stack([x, -y, -np.ones_like(x)], axis=-1)
    return torch.as_tensor(d / np.linalg.norm(d, axis=-1, keepdims=True), dtype=torch.float32)


def camera_rays(c2w: torch.Tensor, dirs_cam: torch.Tensor, times: torch.Tensor, appearance: torch.Tensor,
                near: float) -> Rays:
    """Rays for camera-frame directions dirs_cam [R, 3] of cameras c2w [R, 4, 4] (or [1, 4, 4])."""
    dirs = torch.einsum("rij,rj->ri", c2w[:, :3, :3].expand(dirs_cam.shape[0], 3, 3), dirs_cam)
    origins = c2w[:, :3, 3].expand(dirs_cam.shape[0], 3)
    r = dirs_cam.shape[0]
    return Rays(origins.contiguous(), dirs, times, appearance, torch.full((r,), near, device=dirs.device),
                -dirs_cam[:, 2])


@dataclass
class ShutterMotion:
    """How a rolling-shutter frame was exposed: each pixel's time after the frame's pose, and the camera's motion."""

    offsets: torch.Tensor  # [H * W] float64 seconds from the frame's timestamp to each pixel's exposure (row major)
    motion: torch.Tensor  # [6] linear (m/s) then angular (rad/s) velocity in the camera's axes


def rotate_axis_angle(v: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """Vectors v [R, 3] rotated by axis-angle vectors omega [R, 3] (Rodrigues)."""
    angle = omega.norm(dim=-1, keepdim=True)
    k = omega / angle.clamp(min=1e-12)
    cos, sin = torch.cos(angle), torch.sin(angle)
    return v * cos + torch.cross(k, v, dim=-1) * sin + k * (k * v).sum(-1, keepdim=True) * (1 - cos)


def shutter_rays(c2w: torch.Tensor, dirs_cam: torch.Tensor, times: torch.Tensor, appearance: torch.Tensor,
                 near: float, motion: torch.Tensor, dt: torch.Tensor) -> Rays:
    """``camera_rays`` of a rolling-shutter camera: each ray leaves the camera where it was ``dt`` [R] seconds
    (float64) after its frame's pose c2w [R, 4, 4] (or [1, 4, 4]), moving with ``motion`` [R, 6] (camera axes:
    m/s, then rad/s; ``data.shutter.camera_motion``), and carries the time of its own exposure."""
    step = dt.to(dirs_cam.dtype)[:, None]
    local_dirs = rotate_axis_angle(dirs_cam, motion[:, 3:] * step)
    rays = camera_rays(c2w, local_dirs, times + dt, appearance, near)
    rays.origins = rays.origins + torch.einsum("rij,rj->ri", c2w[:, :3, :3].expand(len(dt), 3, 3),
                                               motion[:, :3] * step)
    rays.view_cos = -dirs_cam[:, 2]  # the ray's depth is along its own row's view axis, rotated with it
    return rays


def lidar_rays(origins: torch.Tensor, points: torch.Tensor, times: torch.Tensor, appearance: torch.Tensor,
               near: float) -> tuple[Rays, torch.Tensor]:
    """Rays from sensor origins [R, 3] to world points [R, 3]; returns the rays and the ranges [R]."""
    d = points - origins
    rng = d.norm(dim=-1)
    dirs = d / rng[:, None].clamp(min=1e-9)
    r = origins.shape[0]
    return Rays(origins, dirs, times, appearance, torch.full((r,), near, device=d.device),
                torch.ones(r, device=d.device)), rng
