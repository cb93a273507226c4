"""The viewer without a browser: the token gate, the preview path, actor edits saved as scenarios."""

from __future__ import annotations

import http.client
import math
import socket
import threading

import numpy as np
import pytest
import yaml

from simrecon.compose import load_scenario, render_frame
from simrecon.compose.scenes import open_scene
from simrecon.data.geometry import make_pose, rot_z
from simrecon.data.scene_api import logged_placements
from simrecon.viewer.edits import ActorEdit, EditSession, local_edit
from simrecon.viewer.gate import Gate, check_bind, cookie_name, is_loopback_host
from simrecon.viewer.render import (Preview, View, c2w_from_viser, colorize_depth, colorize_instance,
                                    preview_intrinsics, viser_from_c2w)


# ---------------------------------------------------------------------------------------------------------
# Binding and the token gate
# ---------------------------------------------------------------------------------------------------------
def test_loopback_names():
    for h in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"):
        assert is_loopback_host(h), h
    for h in ("0.0.0.0", "192.168.1.10", "::", "10.0.0.1"):
        assert not is_loopback_host(h), h


def test_non_loopback_bind_needs_a_token():
    with pytest.raises(ValueError, match="needs --token"):
        check_bind("0.0.0.0", None)
    with pytest.raises(ValueError, match="needs --token"):
        Gate("0.0.0.0", 0, 1, token=None)  # refused before anything listens
    check_bind("0.0.0.0", "s3cret")  # allowed with a token (not bound here: tests stay on loopback)
    check_bind("127.0.0.1", None)


def test_scene_viewer_refuses_non_loopback_without_token(synth_small):
    pytest.importorskip("viser")
    from simrecon.viewer.app import SceneViewer

    with pytest.raises(ValueError, match="needs --token"):
        SceneViewer(open_scene(synth_small), synth_small, host="0.0.0.0", port=0, token=None)


class _Upstream:
    """A stand-in for viser: answers every request with 200 and the request line."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.requests: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                line = data.split(b"\r\n", 1)[0].decode()
                self.requests.append(line)
                body = line.encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)

    def close(self):
        self.sock.close()


def _get(port, path, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read().decode()
    finally:
        c.close()


def test_gate_refuses_clients_without_the_token():
    up = _Upstream()
    gate = Gate("127.0.0.1", 0, up.port, token="s3cret").start()
    try:
        status, _, body = _get(gate.port, "/")
        assert status == 401 and "token" in body
        status, _, _ = _get(gate.port, "/?token=wrong")
        assert status == 401
        ws = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "x", "Sec-WebSocket-Version": "13"}
        status, _, _ = _get(gate.port, "/", ws)  # the websocket handshake is gated too
        assert status == 401
        assert up.requests == []  # nothing reached the viewer
        status, headers, _ = _get(gate.port, "/?token=s3cret&x=1")
        assert status == 303 and headers["Location"] == "/?x=1"
        cookie = headers["Set-Cookie"].split(";")[0]
        assert cookie == f"{cookie_name(gate.port)}=s3cret" and "HttpOnly" in headers["Set-Cookie"]
        status, _, body = _get(gate.port, "/assets/x.js", {"Cookie": cookie})
        assert status == 200 and body == "GET /assets/x.js HTTP/1.1"
        status, _, _ = _get(gate.port, "/", {**ws, "Cookie": cookie})
        assert status == 200
        assert gate.refused == 3
    finally:
        gate.stop()
        up.close()


def test_gate_without_token_serves_loopback_host_names_only():
    up = _Upstream()
    gate = Gate("127.0.0.1", 0, up.port).start()
    try:
        assert _get(gate.port, "/")[0] == 200
        assert _get(gate.port, "/", {"Host": f"localhost:{gate.port}"})[0] == 200
        assert _get(gate.port, "/", {"Host": "evil.example:80"})[0] == 403  # DNS rebinding
    finally:
        gate.stop()
        up.close()


def test_gate_reports_a_busy_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        with pytest.raises(OSError, match="cannot listen"):
            Gate("127.0.0.1", s.getsockname()[1], 1).start()
    finally:
        s.close()


# ---------------------------------------------------------------------------------------------------------
# The preview path
# ---------------------------------------------------------------------------------------------------------
def test_viser_camera_round_trip():
    c2w = make_pose(rot_z(0.3) @ np.array([[0.0, 0, -1], [-1, 0, 0], [0, 1, 0]]), np.array([1.0, 2.0, 1.5]))
    wxyz, pos = viser_from_c2w(c2w)
    np.testing.assert_allclose(c2w_from_viser(wxyz, pos), c2w, atol=1e-9)
    intr = preview_intrinsics(math.radians(60), 1.6, 320)
    assert (intr.w, intr.h) == (320, 200)
    assert math.isclose(2 * math.atan(100 / intr.fl_y), math.radians(60))


def test_preview_coarse_and_refined(synth_small):
    scene = open_scene(synth_small)
    log = scene.log
    f = log.cameras["front"][2]
    intr = preview_intrinsics(2 * math.atan(0.5 * f.intrinsics.h / f.intrinsics.fl_y), 1.6, 96)
    view = View(f.c2w, intr, f.timestamp, logged_placements(log, f.timestamp), "rgb")
    p = Preview(scene, target_fps=1e9, max_factor=4)  # tiny budget: the coarsest factor
    p.rays_per_s = 1e5
    coarse = p.render_coarse(view)
    assert coarse.factor == 4 and coarse.image.shape == (intr.h, intr.w, 3) and coarse.rendered == (24, 15)
    refined = p.render_refined(view, coarse.image)
    assert refined.complete and refined.factor == 1 and refined.image.std() > 5
    # refined = the exact render, strip seams included
    full = scene.render(f.c2w, intr, f.timestamp, view.placements, ("rgb",)).rgb
    assert np.abs(refined.image.astype(float) - full * 255).max() <= 1.0
    # interrupted refinement keeps the coarse rows
    calls = iter([False, True])
    part = Preview(scene, strip_pixels=intr.w * 10).render_refined(view, coarse.image, abort=lambda: next(calls, True))
    assert not part.complete and np.array_equal(part.image[20:], coarse.image[20:])
    for mode in ("depth", "instance"):
        img = p.render_coarse(View(f.c2w, intr, f.timestamp, view.placements, mode), factor=2).image
        assert img.dtype == np.uint8 and img.shape == (intr.h, intr.w, 3)


def test_colour_maps():
    d = np.array([[1.0, 10.0, np.inf]], np.float32)
    c = colorize_depth(d)
    assert c.shape == (1, 3, 3) and (c[0, 2] == 0).all() and (c[0, 0] != c[0, 1]).any()
    inst = np.array([[0, 1, 2]], np.int32)
    c = colorize_instance(inst, ["car_0", "car_1"])
    assert (c[0, 0] == 40).all() and (c[0, 1] != c[0, 2]).any()


# ---------------------------------------------------------------------------------------------------------
# Actor edits -> a scenario compose accepts
# ---------------------------------------------------------------------------------------------------------
def test_local_edit_recovers_translate_and_yaw():
    logged = make_pose(rot_z(0.7), np.array([5.0, 1.0, 0.8]))
    local = make_pose(rot_z(math.radians(20)), np.array([1.0, -0.5, 0.0]))
    e = local_edit(logged, logged @ local)
    assert np.allclose(e.translate, (1.0, -0.5, 0.0), atol=1e-3) and math.isclose(e.rotate[0], 20, abs_tol=1e-2)
    assert abs(e.rotate[1]) < 1e-6 and abs(e.rotate[2]) < 1e-6


def test_saved_scenario_loads_in_the_composer(synth_small, tmp_path):
    scene = open_scene(synth_small)
    moving = [a.id for a in scene.log.actors if not a.static]
    static = [a.id for a in scene.log.actors if a.static]
    removed, moved = moving[0], (moving[1] if len(moving) > 1 else static[0])
    session = EditSession(scene, synth_small)
    session.edits[removed] = ActorEdit(remove=True)
    session.edits[moved] = ActorEdit(False, (1.5, 0.5, 0.0), (30.0, 0.0, 0.0))
    preview_plan = session.plan()
    assert removed in preview_plan.removed
    path = session.save(tmp_path / "edits" / "my_edit", name="my_edit")
    assert path.name == "my_edit.yaml"
    data = yaml.safe_load(path.read_text())
    assert not data["scene"].startswith("/")  # relative to the file
    assert {"id": removed, "remove": True} in data["actors"]

    plan = load_scenario(path)  # the composer's own loader, scene path resolved from the file
    assert plan.name == "my_edit" and plan.removed == [removed]
    t = float(plan.times[1])
    a = plan.actor(moved)
    logged = scene.log.actor(moved).pose_at(t)
    expected = logged @ make_pose(rot_z(math.radians(30)), np.array([1.5, 0.5, 0.0]))
    np.testing.assert_allclose(a.pose_at(t), expected, atol=1e-6)
    # what the viewer previewed is what the composer renders
    np.testing.assert_allclose(preview_plan.actor(moved).pose_at(t), a.pose_at(t), atol=1e-9)
    frame = render_frame(plan, plan.cameras[0].name, 1)
    assert frame.rgb.shape[:2] == (plan.cameras[0].intrinsics.h, plan.cameras[0].intrinsics.w)

    # and the viewer loads it back: the same edits
    again = EditSession(scene, synth_small)
    again.load(path)
    assert again.edits[removed].remove
    assert np.allclose(again.edits[moved].translate, (1.5, 0.5, 0.0)) and again.edits[moved].rotate[0] == 30.0


def test_loaded_scenario_keeps_what_the_viewer_does_not_edit(synth_small, tmp_path):
    scene = open_scene(synth_small)
    src = scene.log.actors[0].id
    f = tmp_path / "in.yaml"
    f.write_text(yaml.safe_dump({
        "scene": str(synth_small), "ego": {"lateral": 1.0}, "time": {"rate": 10},
        "actors": [{"id": "ghost", "source": src, "trajectory": [{"t": 0.0, "position": [5.0, 0.0]}]},
                   {"id": src, "translate": [0.0, 1.0, 0.0]}]}))
    session = EditSession(scene, synth_small)
    session.load(f)
    assert session.edits[src].translate == (0.0, 1.0, 0.0)
    session.edits[src] = ActorEdit(remove=True)
    out = session.save(tmp_path / "out.yaml")
    plan = load_scenario(out)
    assert plan.spec.ego.lateral == 1.0 and plan.spec.time.rate == 10
    assert plan.removed == [src] and any(a.id == "ghost" and a.inserted for a in plan.actors)


# ---------------------------------------------------------------------------------------------------------
# The running viewer's controls (no browser: the GUI handles are driven from Python)
# ---------------------------------------------------------------------------------------------------------
def test_viewer_controls(synth_small, tmp_path):
    pytest.importorskip("viser")
    import time

    from simrecon.viewer.app import SceneViewer

    scene = open_scene(synth_small)
    viewer = SceneViewer(scene, synth_small, port=0).start()
    try:
        assert viewer.url == f"http://127.0.0.1:{viewer.port}/"
        assert viewer.rate == pytest.approx(10.0)
        viewer.gui_lidar.value = True
        assert viewer._lidar_index is not None
        viewer.gui_traj.value = True
        viewer.gui_mode.value = "depth"
        assert viewer.mode == "depth"
        actor = next(a.id for a in scene.log.actors if not a.static)
        viewer.gui_actor.value = actor
        assert viewer._selected == actor and viewer._gizmo is not None
        viewer.gui_fwd.value = 2.0
        viewer.gui_yaw.value = 15.0
        edit = viewer.session.edits[actor]
        assert edit.translate[0] == 2.0 and edit.rotate[0] == 15.0
        t = viewer.time
        logged = scene.log.actor(actor).pose_at(t)
        np.testing.assert_allclose(viewer.plan.actor(actor).pose_at(t)[:3, 3],
                                   (logged @ make_pose(rot_z(math.radians(15)), np.array([2.0, 0, 0])))[:3, 3])
        other = next(a.id for a in scene.log.actors if a.id != actor)
        viewer.gui_actor.value = other
        viewer.gui_removed.value = True
        assert other in viewer.plan.removed
        viewer.gui_path.value = str(tmp_path / "from_gui.yaml")
        viewer.gui_save.value = True  # a button press
        plan = load_scenario(tmp_path / "from_gui.yaml")
        assert plan.removed == [other] and "translate" in plan.actor(actor).edits
        assert viewer.load_scenario(tmp_path / "from_gui.yaml")
        assert not viewer.load_scenario(tmp_path / "missing.yaml")  # refused, said in the GUI
        v0 = viewer.version
        viewer.gui_play.value = True
        time.sleep(0.35)
        viewer.gui_play.value = False
        assert viewer.version > v0 + 1 and viewer.time > scene.log.time_span[0]
    finally:
        viewer.stop()


def test_view_command(synth_small, tmp_path):
    pytest.importorskip("viser")
    import io

    from rich.console import Console

    from simrecon.cli.view_cmd import view_command

    buf = io.StringIO()
    viewer = view_command(synth_small, host="localhost", port=0, console=Console(file=buf, width=200), block=False)
    try:
        text = buf.getvalue()
        assert f"http://localhost:{viewer.port}/" in text and "ssh -N -L" in text
        assert _get(viewer.port, "/")[0] == 200  # viser's page, through the gate
    finally:
        viewer.stop()
    with pytest.raises(FileNotFoundError, match="no such scenario"):
        view_command(synth_small, port=0, scenario=tmp_path / "nope.yaml", console=Console(file=io.StringIO()))
    with pytest.raises(ValueError, match="--port"):
        view_command(synth_small, port=70000, console=Console(file=io.StringIO()))
