"""A bird's-eye plot of drives (SVG, no plotting library): the ego's path and final box for each drive, the
actors' paths, and where the ego touched an actor. Input: ``trajectory.json`` documents (``drive.trajectory_json``)."""

from __future__ import annotations

import html

import numpy as np

ACTOR_COLOR = "#8c959f"


def box_corners(pose: list[list[float]], size: list[float]) -> np.ndarray:
    """The 4 ground corners [4, 2] of a box (pose box-to-world at its centre, size l x w x h)."""
    m = np.asarray(pose, float)
    half = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]]) * np.asarray(size[:2], float) / 2
    return half @ m[:2, :2].T + m[:2, 3]


def _actor_paths(traj: dict) -> dict[str, np.ndarray]:
    paths: dict[str, list] = {}
    for step in traj["steps"]:
        for a in step["actors"]:
            paths.setdefault(a["id"], []).append([a["pose"][0][3], a["pose"][1][3]])
    return {k: np.asarray(v, float) for k, v in paths.items()}


def _contacts(traj: dict) -> np.ndarray:
    pts = [[s["ego_box"]["pose"][0][3], s["ego_box"]["pose"][1][3]] for s in traj["steps"] if s.get("contacts")]
    return np.asarray(pts, float).reshape(-1, 2)


def birdseye_svg(drives: list[tuple[str, str, dict]], width: int = 640, margin_m: float = 6.0) -> str:
    """An SVG of ``drives``: (label, colour, trajectory document) each; world x to the right, y up; the actors
    of the first drive (they move alike in every drive of the same scenario)."""
    egos = [np.asarray([[s["ego_pose"][0][3], s["ego_pose"][1][3]] for s in t["steps"]], float).reshape(-1, 2)
            for _, _, t in drives]
    actors = _actor_paths(drives[0][2]) if drives else {}
    pts = np.concatenate(egos + list(actors.values()) + [np.zeros((0, 2))])
    if not len(pts):
        return "<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'></svg>"
    lo, hi = pts.min(0) - margin_m, pts.max(0) + margin_m
    scale = width / max(hi[0] - lo[0], 1e-6)
    height = int(max(120, min(3 * width, (hi[1] - lo[1]) * scale)))
    scale = min(scale, height / max(hi[1] - lo[1], 1e-6))

    def xy(p: np.ndarray) -> str:
        return " ".join(f"{(x - lo[0]) * scale:.1f},{height - (y - lo[1]) * scale:.1f}" for x, y in p)

    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
             f"style='background:#f6f8fa'>"]
    for aid, path in actors.items():
        parts.append(f"<polyline points='{xy(path)}' fill='none' stroke='{ACTOR_COLOR}' stroke-width='2'>"
                     f"<title>{html.escape(aid)}</title></polyline>")
        parts.append(f"<circle cx='{(path[-1, 0] - lo[0]) * scale:.1f}' cy='{height - (path[-1, 1] - lo[1]) * scale:.1f}'"
                     f" r='3' fill='{ACTOR_COLOR}'/>")
    for (label, color, traj), ego in zip(drives, egos):
        if not len(ego):
            continue
        last = traj["steps"][-1]["ego_box"]
        parts.append(f"<polyline points='{xy(ego)}' fill='none' stroke='{color}' stroke-width='2.5'>"
                     f"<title>{html.escape(label)}</title></polyline>")
        parts.append(f"<polygon points='{xy(box_corners(last['pose'], last['size']))}' fill='{color}' "
                     f"fill-opacity='0.3' stroke='{color}'/>")
        for x, y in _contacts(traj):
            cx, cy = (x - lo[0]) * scale, height - (y - lo[1]) * scale
            parts.append(f"<path d='M{cx - 5:.1f},{cy - 5:.1f}L{cx + 5:.1f},{cy + 5:.1f}M{cx - 5:.1f},{cy + 5:.1f}"
                         f"L{cx + 5:.1f},{cy - 5:.1f}' stroke='{color}' stroke-width='2'/>")
    legend = " ".join(f"<tspan fill='{c}'>&#9632; {html.escape(n)}</tspan>" for n, c, _ in drives)
    parts.append(f"<text x='6' y='16' font-family='sans-serif' font-size='12'>{legend} "
                 f"<tspan fill='{ACTOR_COLOR}'>&#9632; actors</tspan></text></svg>")
    return "".join(parts)
