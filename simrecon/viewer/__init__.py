"""Interactive browser viewer of a scene (``simrecon view``, docs/viewer.md).

``SceneViewer`` needs the ``viewer`` extra (viser); ``render``, ``edits`` and ``gate`` do not.
"""

from __future__ import annotations

from .edits import ActorEdit, EditSession
from .gate import Gate, check_bind, generate_token, host_allowed, is_loopback_host
from .render import Preview, View

__all__ = ["ActorEdit", "EditSession", "Gate", "Preview", "SceneViewer", "View", "check_bind", "generate_token",
           "host_allowed", "is_loopback_host", "open_viewer"]


def __getattr__(name: str):
    if name == "SceneViewer":
        from .app import SceneViewer

        return SceneViewer
    raise AttributeError(name)


def open_viewer(scene_path, host: str = "127.0.0.1", port: int = 7007, token: str | None = None,
                scenario=None, renderer: str = "fast", **kwargs):
    """Open the scene at ``scene_path`` (``simrecon.compose.scenes.open_scene``) and start serving it."""
    from ..compose.scenes import open_scene
    from .app import SceneViewer

    check_bind(host, token)
    scene = open_scene(scene_path, renderer)
    return SceneViewer(scene, scene_path, host=host, port=port, token=token, scenario=scenario, **kwargs).start()
