"""Open the scene a scenario renders: a reconstructed neural scene or the synthetic street's exact renderer."""

from __future__ import annotations

import json
from pathlib import Path

from ..data.scene_api import RenderableScene


def _synth_log_dir(path: Path) -> Path | None:
    """``path`` or ``path/log`` when it is a drive log written by ``simrecon synth``."""
    for cand in (path, path / "log"):
        f = cand / "transforms.json"
        if f.is_file():
            try:
                raw = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None
            return cand if isinstance(raw, dict) and "synth_config" in raw else None
    return None


def open_scene(path: str | Path, renderer: str = "fast") -> RenderableScene:
    """A folder with ``scene.json`` -> the reconstructed scene (``simrecon.scene.load_scene``); a synthetic
    drive log (``simrecon synth OUT``: ``OUT`` or ``OUT/log``) -> its exact ``GroundTruthScene``.

    ``renderer`` (``fast`` or ``reference``) renders a reconstructed scene (``load_scene``); the synthetic
    street's exact renderer has one way only. Anything else raises a one-line ``FileNotFoundError`` / ``ValueError``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such scene folder")
    if not path.is_dir():
        raise ValueError(f"{path}: a scene is a folder (with scene.json, or a synthetic drive log)")
    if (path / "scene.json").is_file():
        try:
            from ..scene import load_scene  # type: ignore[attr-defined]
        except ImportError as exc:
            raise ValueError(f"{path}: a reconstructed scene, but simrecon.scene is not available ({exc})") from None
        return load_scene(path, renderer=renderer)
    log_dir = _synth_log_dir(path)
    if log_dir is not None:
        from ..synth import GroundTruthScene

        return GroundTruthScene.from_log(log_dir)
    if (path / "transforms.json").is_file():
        raise ValueError(f"{path}: a drive log, not a scene: reconstruct it first (only logs written by "
                         "'simrecon synth' render directly)")
    raise ValueError(f"{path}: not a scene: no scene.json (reconstructed scene) and no transforms.json "
                     "(synthetic drive log)")
