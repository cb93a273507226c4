"""A transform tree built from ROS ``/tf`` and ``/tf_static`` (and odometry) messages.

Every frame has at most one parent (as in tf2). A static link holds at every time; a dynamic link is
interpolated between its two nearest stamps (translation linearly, rotation by slerp) and held for
``tolerance`` seconds beyond its first and last stamp. Times are seconds relative to the bag's time
origin (float64), so stamps keep nanosecond resolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..geometry import invert_pose
from ..model import Track


@dataclass
class TfLink:
    """The pose of ``child`` in ``parent``: one static pose, or timestamped samples (child-to-parent)."""

    parent: str
    static: np.ndarray | None = None
    times: list[float] = field(default_factory=list)
    poses: list[np.ndarray] = field(default_factory=list)
    _track: Track | None = None

    def track(self) -> Track:
        if self._track is None:
            order = np.argsort(self.times, kind="stable")
            ts, ps = [], []
            for i in order:  # repeated stamps: the first one wins
                if ts and self.times[i] <= ts[-1]:
                    continue
                ts.append(self.times[i])
                ps.append(self.poses[i])
            self._track = Track(np.array(ts), np.stack(ps))
        return self._track


@dataclass
class TfLookup:
    """A world-from-frame pose, or why there is none (``pose`` None and ``problem`` set)."""

    pose: np.ndarray | None
    problem: str = ""


class TfTree:
    """Links by child frame; ``lookup(world, frame, t)`` chains them."""

    def __init__(self, tolerance: float = 0.05) -> None:
        self.links: dict[str, TfLink] = {}
        self.tolerance = float(tolerance)  # seconds a dynamic link is held beyond its first/last stamp

    @staticmethod
    def clean(name: str) -> str:
        """ROS 1 frame ids may start with '/'; tf2 drops it."""
        return str(name).lstrip("/")

    def add(self, parent: str, child: str, pose: np.ndarray, t: float | None) -> None:
        """A child-to-parent ``pose``; ``t`` None for a static link."""
        parent, child = self.clean(parent), self.clean(child)
        link = self.links.get(child)
        if link is None or link.parent != parent:  # a re-parented frame: the latest parent wins
            link = self.links[child] = TfLink(parent)
        if t is None:
            link.static = pose
        else:
            link.times.append(float(t))
            link.poses.append(pose)
            link._track = None

    def frames(self) -> set[str]:
        return set(self.links) | {link.parent for link in self.links.values()}

    def root_of(self, frame: str) -> str:
        frame, seen = self.clean(frame), set()
        while frame in self.links and frame not in seen:
            seen.add(frame)
            frame = self.links[frame].parent
        return frame

    def _to_root(self, frame: str, t: float) -> tuple[np.ndarray | None, str]:
        pose, seen = np.eye(4), set()
        while frame in self.links:
            if frame in seen:
                return None, f"the tf tree has a loop through {frame!r}"
            seen.add(frame)
            link = self.links[frame]
            if link.static is not None and not link.times:
                step = link.static
            else:
                track = link.track()
                lo, hi = track.span
                if t < lo - self.tolerance or t > hi + self.tolerance:
                    return None, (f"no tf {link.parent!r} -> {frame!r} near t={t:.3f} s "
                                  f"(it spans {lo:.3f}..{hi:.3f} s)")
                step = track.poses_at(np.array([t]), hold=True)[0][0]
            pose = step @ pose
            frame = link.parent
        return pose, frame

    def lookup(self, world: str, frame: str, t: float) -> TfLookup:
        """The frame-to-world pose of ``frame`` at time ``t``."""
        world, frame = self.clean(world), self.clean(frame)
        if frame not in self.frames():
            return TfLookup(None, f"frame {frame!r} is not in the tf tree")
        a, root_a = self._to_root(frame, t)
        if a is None:
            return TfLookup(None, root_a)
        b, root_b = self._to_root(world, t)
        if b is None:
            return TfLookup(None, root_b)
        if root_a != root_b:
            return TfLookup(None, f"no tf chain from {frame!r} to {world!r} (their roots are {root_a!r} and "
                                  f"{root_b!r})")
        return TfLookup(invert_pose(b) @ a)
