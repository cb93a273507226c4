"""The ``mcap`` export format: one ``scenario.mcap`` that opens in Foxglove (docs/export.md).

Each frame's payload (the JPEG of its image, the PNG of its depth in millimetres) is kept in its progress
record, so an interrupted export resumes without re-rendering and the finished folder holds no second
copy of the images; the MCAP file is assembled at the end (``mcap_writer``). Needs the ``ros`` extra.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from ..compose.composer import ComposedFrame
from ..compose.scenario import Plan, ScenarioError
from .formats import GL_TO_CV, png_bytes

MCAP_FILE = "scenario.mcap"
JPEG_QUALITY = 90  # JPEG quality of the camera images (1-95)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def depth_mm(depth: np.ndarray) -> np.ndarray:
    """Depth in metres -> uint16 millimetres (0 where unknown or beyond 65.535 m)."""
    mm = np.where(np.isfinite(depth), np.round(depth.astype(np.float64) * 1000.0), 0.0)
    return np.where((mm > 65535) | (mm < 0), 0, mm).astype(np.uint16)


class McapFormat:
    """Camera images, calibration, depth, transforms, actor boxes and the ego path for Foxglove."""

    name = "mcap"
    takes_sweeps = True  # final_files also gets the lidar sweeps

    def check(self, plan: Plan) -> None:
        if "rgb" not in plan.outputs:
            raise ScenarioError(plan.file, "outputs", "the mcap format needs rgb in outputs")
        try:
            import foxglove  # noqa: F401
        except ImportError:
            raise ScenarioError(plan.file, "format", "the mcap format needs the 'ros' extra: pip install -c "
                                                     "constraints.txt -e '.[ros]'") from None

    def frame_files(self, plan: Plan, frame: ComposedFrame, n: int) -> tuple[dict[str, bytes], dict]:
        buf = io.BytesIO()
        Image.fromarray(frame.rgb).save(buf, format="JPEG", quality=JPEG_QUALITY)
        extra = {"jpeg": _b64(buf.getvalue())}
        if frame.depth is not None and "depth" in plan.outputs:
            extra["depth_mm_png"] = _b64(png_bytes(depth_mm(frame.depth)))
        if frame.instance is not None and "instance" in plan.outputs:
            extra["instance_png"] = _b64(png_bytes(frame.instance.astype(np.uint16)))
        return {}, extra

    def final_files(self, plan: Plan, records: list[dict], lidar=None, sweeps: list[dict] = ()) -> dict[str, bytes]:
        """The MCAP file: per time the transforms (world -> ego -> cameras, lidar), actor boxes, every camera's
        calibration, image and depth, and (``lidar``: its ``LidarPlan``) the sweep as a point cloud."""
        from .lidar_files import sweep_points
        from .mcap_writer import Box, FoxgloveMcap

        out = FoxgloveMcap({"scenario": plan.name, "scene": str(plan.scene_path), "source": "simrecon export"})
        times = [float(t) for t in plan.times]
        by_time: dict[int, list[dict]] = {}
        for r in records:
            by_time.setdefault(int(r["key"][1]), []).append(r)
        mounts = [(c.name, np.asarray(c.cam_to_vehicle) @ GL_TO_CV) for c in plan.cameras]
        if lidar is not None:
            mounts.append((lidar.name, np.asarray(lidar.sensor_to_vehicle)))
        sweep_at = {int(r["key"][1]): r for r in sweeps}
        egos = [plan.ego_fn(t) for t in times]
        out.path(times[0], np.stack([e[:3, 3] for e in egos]))
        for k, t in enumerate(times):
            out.transforms(t, [("world", "ego", egos[k])] + [("ego", name, m) for name, m in mounts])
            out.boxes(t, [Box(a.id, a.cls, pose, tuple(float(x) for x in a.size))
                          for a in plan.actors for pose in [a.pose_at(t)] if pose is not None])
            for r in by_time.get(k, []):
                cam = r["labels"]["camera"]
                out.calibration(t, cam, r["labels"]["intrinsics"])
                out.image(t, cam, base64.b64decode(r["extra"]["jpeg"]), "jpeg")
                if "depth_mm_png" in r["extra"]:
                    png = Image.open(io.BytesIO(base64.b64decode(r["extra"]["depth_mm_png"])))
                    out.depth(t, cam, np.array(png, dtype=np.uint16))
                if "instance_png" in r["extra"]:
                    png = Image.open(io.BytesIO(base64.b64decode(r["extra"]["instance_png"])))
                    out.depth(t, cam, np.array(png, dtype=np.uint16), kind="instance")
            if k in sweep_at:
                pts, intensity, inst = sweep_points(sweep_at[k])
                out.point_cloud(t, lidar.name, pts, intensity, inst, f"/lidar/{lidar.name}")
        return {MCAP_FILE: out.close()}
