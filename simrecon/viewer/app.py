"""``simrecon view``: a browser viewer of a scene, built on viser (docs/viewer.md).

One ``SceneViewer`` serves one scene: viser on an ephemeral loopback port that answers the gate only
(``upstream.py``), behind the token / Host gate (``gate.py``) on the user's port, a GUI (time, playback,
snapping, toggles, render mode, actor edits, scenario save/load), 3D overlays (actor boxes, trajectories,
lidar) and one render thread that serves every connected browser with the progressive preview
(``render.py``).
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.geometry import make_pose, matrix_to_quat, quat_to_matrix
from ..data.model import DriveLog
from ..data.scene_api import RenderableScene
from .edits import ActorEdit, EditSession, local_edit
from .gate import Gate, check_bind
from .lidar_overlay import LidarOverlay, OverlayState
from .render import (MODES, Frame, Preview, View, c2w_from_viser, instance_color, preview_intrinsics, vertical_fov,
                     viser_from_c2w)
from .upstream import guard_viser

SETTLE_S = 0.15  # still for this long -> refine
NONE = "(none)"


def log_rate(log: DriveLog) -> float:
    """Frames per second of the log's cameras (median frame interval), 10 Hz when unknown."""
    diffs = []
    for frames in log.cameras.values():
        ts = np.unique(np.round([f.timestamp for f in frames], 9))
        if len(ts) > 1:
            diffs.append(np.median(np.diff(ts)))
    if not diffs:
        return 10.0
    dt = float(np.median(diffs))
    return 1.0 / dt if dt > 1e-6 else 10.0


@contextlib.contextmanager
def _quiet(on: bool):
    if not on:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()):
        yield


@dataclass
class _ClientView:
    client: object
    cam_version: int = 0
    changed_at: float = field(default_factory=time.monotonic)
    shown_key: tuple | None = None
    refined: bool = False
    image: np.ndarray | None = None
    stamps: list = field(default_factory=list)


class SceneViewer:
    """Serve ``scene`` at ``http://host:port/``. ``start()`` returns at once; ``stop()`` shuts down."""

    def __init__(self, scene: RenderableScene, scene_path: str | Path, host: str = "127.0.0.1", port: int = 7007,
                 token: str | None = None, scenario: str | Path | None = None, preview_width: int = 320,
                 target_fps: float = 8.0, verbose: bool = False):
        check_bind(host, token)
        self.scene = scene
        self.log = scene.log
        self.host, self.port, self.token = host, port, token
        self.verbose = verbose
        self.session = EditSession(scene, Path(scene_path))
        if scenario is not None:
            self.session.load(scenario)
        self.plan = self.session.plan()
        self.preview = Preview(scene, target_fps=target_fps)
        self.preview_width = preview_width
        self.t0, self.t1 = self.log.time_span
        self.rate = log_rate(self.log)
        self.time = float(self.t0)
        self.mode = "rgb"
        self.show_actors = True
        self.playing = False
        self.follow: str | None = None
        self.frames_rendered = 0
        self.last_status = ""
        self.version = 0  # bumps on every change of what is rendered (time, toggles, edits)
        self._lock = threading.RLock()
        self._clients: dict[int, _ClientView] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._syncing = False
        self._time_syncing = False
        self._gizmo = None
        self._gizmo_syncing = False
        self._lidar_index: int | None = None
        self._boxes: dict = {}
        self._selected: str | None = None
        self._lidar_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.lidar_sweep = LidarOverlay(self.plan, self._overlay_state)  # the rendered sweep (lidar_overlay.py)
        self.server = None
        self.gate: Gate | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        base = f"http://{host}:{self.port}/"
        return base + (f"?token={self.token}" if self.token else "")

    def start(self) -> "SceneViewer":
        import viser

        # viser prints a banner with its own (internal) port: not the address to open, so keep it quiet.
        with _quiet(not self.verbose):
            self.server = viser.ViserServer(host="127.0.0.1", port=0, label="simrecon view", verbose=self.verbose)
        # viser's "share" button opens a public tunnel (share.viser.studio) that would bypass the gate: off.
        self.server.request_share_url = lambda *a, **k: None  # type: ignore[method-assign]
        self.server.gui.configure_theme(show_share_button=False, control_width="medium")
        try:
            # viser's port answers nothing but requests that carry the gate's secret: the gate is the only way in.
            guard = guard_viser(self.server.get_port())
            self.gate = Gate(self.host, self.port, guard.port, self.token, upstream_secret=guard.secret).start()
        except BaseException:
            self.server.stop()
            raise
        self.port = self.gate.port
        self.server.scene.set_up_direction("+z")
        self._build_gui()
        self._rebuild_overlays()
        self.server.on_client_connect(self._on_connect)
        self.server.on_client_disconnect(self._on_disconnect)
        for target, name in ((self._render_loop, "render"), (self._play_loop, "play")):
            th = threading.Thread(target=target, name=f"simrecon-view-{name}", daemon=True)
            th.start()
            self._threads.append(th)
        return self

    def stop(self) -> None:
        self._stop.set()
        for th in self._threads:
            th.join(timeout=5.0)
        if self.gate is not None:
            self.gate.stop()
        if self.server is not None:
            with _quiet(not self.verbose):
                self.server.stop()

    def wait(self) -> None:
        """Block until Ctrl-C (or ``stop()`` from another thread)."""
        try:
            while not self._stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass

    # -- state changes --------------------------------------------------------------------------------------
    def _bump(self) -> None:
        with self._lock:
            self.version += 1

    def set_time(self, t: float) -> None:
        with self._lock:
            self.time = float(min(max(t, self.t0), self.t1))
            self.version += 1
        self._update_dynamic_overlays()
        if self.follow:
            self.snap(self.follow)

    def _replan(self) -> bool:
        from ..compose.scenario import ScenarioError

        try:
            plan = self.session.plan()
        except (ScenarioError, ValueError) as exc:
            self._message(f"refused: {exc}")
            return False
        with self._lock:
            self.plan = plan
            self.version += 1
        self._rebuild_overlays()
        return True

    def _overlay_state(self) -> OverlayState:
        with self._lock:
            return OverlayState(self.version, self.time, self.plan, self.show_actors)

    def snap(self, camera: str) -> None:
        """Put every browser's camera where ``camera`` (a camera of the plan) is at the current time."""
        cams = {c.name: c for c in self.plan.cameras}
        if camera not in cams or self.server is None:
            return
        cam = cams[camera]
        c2w = self.plan.c2w(cam, self.time)
        wxyz, pos = viser_from_c2w(c2w)
        fov = vertical_fov(cam.intrinsics)
        for client in list(self.server.get_clients().values()):
            with client.atomic():
                client.camera.wxyz = wxyz
                client.camera.position = pos
                client.camera.fov = fov

    # -- GUI ------------------------------------------------------------------------------------------------
    def _build_gui(self) -> None:
        gui = self.server.gui
        self.gui_status = gui.add_markdown("waiting for a browser ...")
        step = 1.0 / self.rate
        with gui.add_folder("Time"):
            self.gui_time = gui.add_slider("time (s)", min=float(self.t0), max=float(max(self.t1, self.t0 + step)),
                                           step=float(step), initial_value=float(self.t0))
            self.gui_play = gui.add_checkbox("play", False, hint=f"play at the log's rate ({self.rate:.3g} Hz)")
        with gui.add_folder("Camera"):
            names = [c.name for c in self.plan.cameras]
            self.gui_camera = gui.add_dropdown("logged camera", names or [NONE], initial_value=(names or [NONE])[0])
            self.gui_snap = gui.add_button("snap to camera")
            self.gui_follow = gui.add_checkbox("follow camera", False, hint="stay on this camera while time moves")
            gui.add_markdown("Drag: orbit · right-drag: pan · wheel: zoom · WASD/QE + arrows: fly")
        with gui.add_folder("Render"):
            self.gui_mode = gui.add_dropdown("mode", MODES, initial_value="rgb")
            self.gui_width = gui.add_slider("preview width", min=96, max=1920, step=32,
                                            initial_value=int(self.preview_width))
            self.gui_actors = gui.add_checkbox("actors", True, hint="draw the actors in the render")
            self.gui_boxes = gui.add_checkbox("3D boxes", True)
            self.gui_traj = gui.add_checkbox("trajectories", False)
            self.gui_lidar = gui.add_checkbox("lidar points", False, disabled=not self.log.lidar,
                                              hint="the logged sweep nearest the current time")
        self.lidar_sweep.build_gui(self.server)
        with gui.add_folder("Edit actors"):
            ids = self._editable_ids()
            self.gui_actor = gui.add_dropdown("actor", [NONE] + ids, initial_value=NONE,
                                              hint="or click an actor's box")
            self.gui_fwd = gui.add_number("forward (m)", 0.0, step=0.1)
            self.gui_left = gui.add_number("left (m)", 0.0, step=0.1)
            self.gui_yaw = gui.add_number("yaw (deg)", 0.0, step=1.0)
            self.gui_removed = gui.add_checkbox("deleted", False)
            self.gui_reset = gui.add_button("reset actor")
            self.gui_path = gui.add_text("scenario file", "viewer_edit.yaml")
            self.gui_save = gui.add_button("save scenario")
            self.gui_load = gui.add_button("load scenario")
            self.gui_msg = gui.add_markdown(" ")
        self._bind_gui()

    def _bind_gui(self) -> None:
        """Wire the GUI handles of ``_build_gui`` to the viewer's state."""

        @self.gui_time.on_update
        def _(_e) -> None:
            if not self._time_syncing:
                self.set_time(self.gui_time.value)

        @self.gui_play.on_update
        def _(_e) -> None:
            self.playing = bool(self.gui_play.value)
            self._bump()

        @self.gui_snap.on_click
        def _(_e) -> None:
            self.snap(self.gui_camera.value)

        @self.gui_follow.on_update
        def _(_e) -> None:
            self.follow = self.gui_camera.value if self.gui_follow.value else None
            if self.follow:
                self.snap(self.follow)

        @self.gui_camera.on_update
        def _(_e) -> None:
            if self.gui_follow.value:
                self.follow = self.gui_camera.value
                self.snap(self.follow)

        @self.gui_mode.on_update
        def _(_e) -> None:
            self.mode = self.gui_mode.value
            self._bump()

        @self.gui_width.on_update
        def _(_e) -> None:
            self.preview_width = int(self.gui_width.value)
            self._bump()

        @self.gui_actors.on_update
        def _(_e) -> None:
            self.show_actors = bool(self.gui_actors.value)
            self._bump()

        for handle in (self.gui_boxes, self.gui_traj, self.gui_lidar):
            handle.on_update(lambda _e: self._rebuild_overlays())

        @self.gui_actor.on_update
        def _(_e) -> None:
            self._select(None if self.gui_actor.value == NONE else self.gui_actor.value)

        for handle in (self.gui_fwd, self.gui_left, self.gui_yaw, self.gui_removed):
            handle.on_update(lambda _e: self._edit_from_gui())

        @self.gui_reset.on_click
        def _(_e) -> None:
            if self._selected:
                self.session.edits.pop(self._selected, None)
                self._sync_edit_gui()
                self._replan()

        @self.gui_save.on_click
        def _(_e) -> None:
            try:
                path = self.session.save(self.gui_path.value)
            except (OSError, ValueError) as exc:
                self._message(f"not saved: {exc}")
                return
            self._message(f"saved `{path}`: `simrecon compose {path} -o OUT`")

        @self.gui_load.on_click
        def _(_e) -> None:
            self.load_scenario(self.gui_path.value)

    def load_scenario(self, path: str | Path) -> bool:
        """Preview a scenario file (its actor edits become the viewer's, the rest is kept as is)."""
        old = (self.session.base, self.session.base_file, self.session.edits)
        try:
            self.session.load(path)
        except (ValueError, FileNotFoundError) as exc:
            self.session.base, self.session.base_file, self.session.edits = old
            self._message(f"not loaded: {exc}")
            return False
        self._replan()
        self._refresh_actor_options()
        self._sync_edit_gui()
        names = [c.name for c in self.plan.cameras]
        if names:
            self.gui_camera.options = names
        self._message(f"loaded `{path}`")
        return True

    def _message(self, text: str) -> None:
        if self.server is not None:
            self.gui_msg.content = text

    def _editable_ids(self) -> list[str]:
        ids = [a.id for a in self.log.actors]
        ids += [a.id for a in self.plan.actors if a.inserted]
        return ids

    def _refresh_actor_options(self) -> None:
        current = self.gui_actor.value
        opts = [NONE] + self._editable_ids()
        self.gui_actor.options = opts
        if current in opts:
            self._syncing = True
            try:
                self.gui_actor.value = current
            finally:
                self._syncing = False

    def _select(self, actor_id: str | None) -> None:
        self._selected = actor_id
        if self.gui_actor.value != (actor_id or NONE):
            self.gui_actor.value = actor_id or NONE  # re-enters _select once, harmless
        self._sync_edit_gui()
        self._update_gizmo()
        self._update_dynamic_overlays()

    def _sync_edit_gui(self) -> None:
        e = self.session.edits.get(self._selected or "", ActorEdit())
        self._syncing = True
        try:
            self.gui_fwd.value = float(e.translate[0])
            self.gui_left.value = float(e.translate[1])
            self.gui_yaw.value = float(e.rotate[0])
            self.gui_removed.value = bool(e.remove)
        finally:
            self._syncing = False

    def _edit_from_gui(self) -> None:
        if self._syncing or not self._selected:
            return
        old = self.session.edits.get(self._selected, ActorEdit())
        e = ActorEdit(bool(self.gui_removed.value),
                      (float(self.gui_fwd.value), float(self.gui_left.value), float(old.translate[2])),
                      (float(self.gui_yaw.value), float(old.rotate[1]), float(old.rotate[2])))
        self.set_edit(self._selected, e)

    def set_edit(self, actor_id: str, edit: ActorEdit) -> bool:
        """Apply an actor edit (refused edits keep the previous one and say why in the GUI)."""
        previous = self.session.edits.get(actor_id)
        self.session.edits[actor_id] = edit
        if not self._replan():
            if previous is None:
                self.session.edits.pop(actor_id, None)
            else:
                self.session.edits[actor_id] = previous
            if self.server is not None:
                self._sync_edit_gui()
            return False
        if self.server is not None:
            self._message(f"{actor_id}: " + ("deleted" if edit.remove else
                                             f"moved {edit.translate[0]:+.2f} m forward, {edit.translate[1]:+.2f} m "
                                             f"left, yaw {edit.rotate[0]:+.1f} deg"))
            self._update_gizmo()
        return True

    # -- overlays ---------------------------------------------------------------------------------------------
    def _rebuild_overlays(self) -> None:
        if self.server is None:
            return
        scene = self.server.scene
        with self._lock:
            plan = self.plan
        self._boxes = {}
        try:
            scene.remove_by_name("/actors")
        except Exception:  # noqa: BLE001 - nothing there yet
            pass
        for a in plan.actors:
            handle = scene.add_box(f"/actors/{a.id}", color=instance_color(a.id),
                                   dimensions=tuple(float(x) for x in a.size), opacity=0.35,
                                   cast_shadow=False, receive_shadow=False, visible=False)
            handle.on_click(lambda e, aid=a.id: self._select(aid))
            self._boxes[a.id] = handle
        # Trajectories: every actor (as edited) and the ego, sampled at the log's rate.
        try:
            scene.remove_by_name("/trajectories")
        except Exception:  # noqa: BLE001
            pass
        if self.gui_traj.value:
            ts = np.arange(self.t0, self.t1 + 1e-9, 1.0 / self.rate)
            for a in plan.actors:
                pts = [p[:3, 3] for p in (a.pose_at(t) for t in ts) if p is not None]
                self._polyline(f"/trajectories/{a.id}", pts, instance_color(a.id))
            ego = [plan.ego_fn(t)[:3, 3] for t in ts]
            self._polyline("/trajectories/ego", ego, (255, 255, 255))
        self._update_dynamic_overlays()

    def _polyline(self, name: str, pts: list, color: tuple[int, int, int]) -> None:
        if len(pts) < 2:
            return
        p = np.asarray(pts, dtype=np.float32)
        segs = np.stack([p[:-1], p[1:]], axis=1)
        self.server.scene.add_line_segments(name, segs, colors=color, thickness=0.08)

    def _update_dynamic_overlays(self) -> None:
        """Boxes at the current time (hidden when absent), the lidar sweep of the current time."""
        if self.server is None:
            return
        with self._lock:
            plan, t = self.plan, self.time
        show = bool(self.gui_boxes.value)
        for a in plan.actors:
            handle = self._boxes.get(a.id)
            if handle is None:
                continue
            pose = a.pose_at(t)
            if pose is None or not show:
                handle.visible = False
                continue
            handle.wxyz = matrix_to_quat(pose[:3, :3])
            handle.position = pose[:3, 3]
            handle.opacity = 0.6 if a.id == self._selected else 0.3
            handle.visible = True
        self._update_lidar(t)
        self._update_gizmo()

    def _update_lidar(self, t: float) -> None:
        scene = self.server.scene
        if not self.gui_lidar.value or not self.log.lidar:
            try:
                scene.remove_by_name("/lidar")
            except Exception:  # noqa: BLE001
                pass
            self._lidar_index = None
            return
        times = np.array([s.timestamp for s in self.log.lidar])
        i = int(np.argmin(np.abs(times - t)))
        if self._lidar_index == i:
            return
        if i not in self._lidar_cache:
            pts = self.log.lidar[i].load_world(self.log.root).astype(np.float32)
            if len(pts) > 120_000:
                pts = pts[np.random.default_rng(0).choice(len(pts), 120_000, replace=False)]
            z = pts[:, 2]
            a = np.clip((z - np.percentile(z, 2)) / max(1e-6, np.percentile(z, 98) - np.percentile(z, 2)), 0, 1)
            colors = (np.stack([a, 1 - np.abs(a - 0.5) * 2, 1 - a], axis=1) * 255).astype(np.uint8)
            if len(self._lidar_cache) > 32:
                self._lidar_cache.clear()
            self._lidar_cache[i] = (pts, colors)
        pts, colors = self._lidar_cache[i]
        scene.add_point_cloud("/lidar", pts, colors, point_size=0.06)
        self._lidar_index = i

    def _update_gizmo(self) -> None:
        if self.server is None:
            return
        scene = self.server.scene
        actor_id = self._selected
        plan_actor = next((a for a in self.plan.actors if a.id == actor_id), None) if actor_id else None
        pose = plan_actor.pose_at(self.time) if plan_actor is not None else None
        if pose is None:
            if self._gizmo is not None:
                self._gizmo.visible = False
            return
        if self._gizmo is None:
            self._gizmo = scene.add_transform_controls("/edit_gizmo", scale=2.0, depth_test=False)

            @self._gizmo.on_update
            def _(_e) -> None:
                self._edit_from_gizmo()

        self._gizmo_syncing = True
        try:
            self._gizmo.wxyz = matrix_to_quat(pose[:3, :3])
            self._gizmo.position = pose[:3, 3]
            self._gizmo.visible = True
        finally:
            self._gizmo_syncing = False

    def _edit_from_gizmo(self) -> None:
        if self._gizmo_syncing or not self._selected:
            return
        actor = next((a for a in self.log.actors if a.id == self._selected), None)
        if actor is None:
            return
        logged = actor.pose_at(self.time)
        if logged is None:
            return
        new_pose = make_pose(quat_to_matrix(np.asarray(self._gizmo.wxyz)), np.asarray(self._gizmo.position))
        e = local_edit(logged, new_pose)
        self.session.edits[self._selected] = e
        self._sync_edit_gui()
        with self._lock:
            try:
                self.plan = self.session.plan()
            except ValueError as exc:
                self._message(f"refused: {exc}")
            self.version += 1
        self._update_dynamic_overlays_boxes_only()

    def _update_dynamic_overlays_boxes_only(self) -> None:
        pose = next((a.pose_at(self.time) for a in self.plan.actors if a.id == self._selected), None)
        handle = self._boxes.get(self._selected or "")
        if handle is not None and pose is not None:
            handle.wxyz = matrix_to_quat(pose[:3, :3])
            handle.position = pose[:3, 3]

    # -- clients and rendering --------------------------------------------------------------------------------
    def _on_connect(self, client) -> None:
        cv = _ClientView(client)
        with self._lock:
            self._clients[client.client_id] = cv

        @client.camera.on_update
        def _(_cam) -> None:
            cv.cam_version += 1
            cv.changed_at = time.monotonic()

        names = [c.name for c in self.plan.cameras]
        if names:
            cam = self.plan.cameras[0]
            wxyz, pos = viser_from_c2w(self.plan.c2w(cam, self.time))
            with client.atomic():
                client.camera.wxyz = wxyz
                client.camera.position = pos
                client.camera.fov = vertical_fov(cam.intrinsics)

    def _on_disconnect(self, client) -> None:
        with self._lock:
            self._clients.pop(client.client_id, None)

    def current_view(self, cv: _ClientView) -> View | None:
        cam = cv.client.camera
        try:
            if cam.image_height <= 0 or cam.fov <= 0:
                return None
            c2w = c2w_from_viser(cam.wxyz, cam.position)
            fov, aspect = float(cam.fov), float(cam.aspect)
        except Exception:  # noqa: BLE001 - no camera message yet
            return None
        with self._lock:
            t, plan, mode, width, actors = self.time, self.plan, self.mode, self.preview_width, self.show_actors
        placements = self.session.placements(plan, t) if actors else {}
        return View(c2w, preview_intrinsics(fov, aspect, width), t, placements, mode)

    def _render_loop(self) -> None:
        while not self._stop.is_set():
            did = False
            with self._lock:
                clients = list(self._clients.values())
            for cv in clients:
                try:
                    did |= self._step(cv)
                except Exception as exc:  # noqa: BLE001 - keep serving; show what went wrong
                    self.gui_status.content = f"render failed: {type(exc).__name__}: {exc}"
                    time.sleep(0.5)
            did |= self.lidar_sweep.step()  # after the clients' frames: a new time shows its image first
            if not did:
                self._stop.wait(0.01)

    def _step(self, cv: _ClientView) -> bool:
        key = (cv.cam_version, self.version)
        if key != cv.shown_key:
            view = self.current_view(cv)
            if view is None:
                return False
            cv.changed_at = max(cv.changed_at, time.monotonic()) if cv.shown_key is None else cv.changed_at
            frame = self.preview.render_coarse(view)
            cv.shown_key, cv.refined = key, frame.factor == 1
            self._show(cv, frame, view)
            return True
        if cv.refined or self.playing or time.monotonic() - cv.changed_at < SETTLE_S:
            return False
        view = self.current_view(cv)
        if view is None:
            return False
        last_sent = [time.monotonic()]

        def partial(img: np.ndarray) -> None:
            if time.monotonic() - last_sent[0] > 0.3 and self._connected(cv):
                cv.client.scene.set_background_image(img, format="jpeg", jpeg_quality=80)
                last_sent[0] = time.monotonic()

        frame = self.preview.render_refined(view, cv.image, abort=lambda: (cv.cam_version, self.version) != key,
                                            on_strip=partial)
        cv.refined = frame.complete
        self._show(cv, frame, view)
        return True

    def _connected(self, cv: _ClientView) -> bool:
        return not self._stop.is_set() and self._clients.get(cv.client.client_id) is cv

    def _show(self, cv: _ClientView, frame: Frame, view: View) -> None:
        cv.image = frame.image
        if not self._connected(cv):  # the browser left during the render
            return
        cv.client.scene.set_background_image(frame.image, format="jpeg",
                                             jpeg_quality=92 if frame.factor == 1 else 75)
        now = time.monotonic()
        self.frames_rendered += 1
        w, h = view.intrinsics.w, view.intrinsics.h
        if frame.factor > 1:  # moving: the rate at which coarse frames reach the browser
            cv.stamps = [s for s in cv.stamps if now - s < 2.0] + [now]
            fps = (len(cv.stamps) - 1) / (cv.stamps[-1] - cv.stamps[0]) if len(cv.stamps) > 2 else \
                1.0 / max(frame.seconds, 1e-3)
            how = (f"{fps:.1f} fps · {w}×{h} preview, coarse 1/{frame.factor} ({frame.rendered[0]}×"
                   f"{frame.rendered[1]}) · {frame.seconds * 1000:.0f} ms")
        else:
            cv.stamps = []
            state = "refined" if frame.complete else "refining"
            how = f"{w}×{h} ({state}) in {frame.seconds:.2f} s"
        self.last_status = f"**frame {self.frames_rendered}** · {how} · t = {view.time:.2f} s · {view.mode}"
        self.gui_status.content = self.last_status

    def _play_loop(self) -> None:
        step = 1.0 / self.rate
        next_tick = time.monotonic()
        while not self._stop.is_set():
            if not self.playing:
                self._stop.wait(0.05)
                next_tick = time.monotonic()
                continue
            next_tick += step
            t = self.time + step
            if t > self.t1 + 1e-9:
                t = self.t0
            self._time_syncing = True
            try:
                self.gui_time.value = round(t, 6)
            finally:
                self._time_syncing = False
            self.set_time(t)
            self._stop.wait(max(0.0, next_tick - time.monotonic()))
