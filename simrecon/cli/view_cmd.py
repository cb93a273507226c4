"""``simrecon view``: the work behind the command (docs/viewer.md).

The typer wiring lives in the CLI app; bad input raises ``ValueError`` / ``FileNotFoundError`` with a
one-line message (mapped to exit code 2), a busy port an ``OSError`` turned into a ``ValueError``.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape


def view_command(scene: Path, host: str = "127.0.0.1", port: int = 7007, scenario: Path | None = None,
                 token: str | None = None, console: Console | None = None, block: bool = True,
                 log: Path | None = None, renderer: str = "fast"):
    """Serve ``scene`` in the browser until Ctrl-C. Returns the running viewer when ``block`` is False. ``log``:
    a reconstructed scene's drive log, when it moved."""
    from ..viewer.gate import generate_token, is_loopback_host

    console = console or Console(stderr=True)
    try:
        import viser  # noqa: F401
    except ImportError:
        raise ValueError("simrecon view needs viser: pip install 'simrecon[viewer]' (or pip install viser)") from None
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"--port {port}: expected 0..65535")
    if not is_loopback_host(host) and not token:
        token = generate_token()
        console.print(f"[yellow]--host {escape(host)} is not loopback: generated an access token; only the URL "
                      "below (or ?token=...) opens the viewer[/]", highlight=False, soft_wrap=True)
    if scenario is not None and not Path(scenario).is_file():
        raise FileNotFoundError(f"{scenario}: no such scenario file")
    from ..compose.scenes import open_scene
    from ..viewer.app import SceneViewer

    with console.status(f"opening {scene}"):
        opened = open_scene(scene, renderer) if log is None else _scene_with_log(Path(scene), log, renderer)
        viewer = SceneViewer(opened, scene, host=host, port=port, token=token, scenario=scenario)
    try:
        viewer.start()
    except OSError as exc:
        raise ValueError(f"--port {port}: {exc.strerror or exc} (choose another --port, or 0 for any free one)") from None
    console.print(f"[bold]simrecon view[/] {escape(str(scene))}: {escape(viewer.log.summary())}", highlight=False,
                  soft_wrap=True)
    console.print(f"open [bold]{escape(viewer.url)}[/]", highlight=False, soft_wrap=True)
    if is_loopback_host(host):
        console.print(f"remote machine? tunnel the port: ssh -N -L {viewer.port}:127.0.0.1:{viewer.port} USER@HOST, "
                      f"then open http://127.0.0.1:{viewer.port}/", highlight=False, soft_wrap=True)
    if not block:
        return viewer
    console.print("Ctrl-C to stop", style="dim", highlight=False)
    try:
        viewer.wait()
    finally:
        viewer.stop()
    return None


def _scene_with_log(scene: Path, log: Path, renderer: str = "fast"):
    """A reconstructed scene opened with its drive log at ``log``; --log means nothing to a synthetic log."""
    if not (scene / "scene.json").is_file():
        raise ValueError(f"--log: only for a reconstructed scene ({scene} has no scene.json)")
    from ..scene import load_scene

    return load_scene(scene, log=log, renderer=renderer)
