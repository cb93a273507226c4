"""The viewer's rendered lidar sweep (viewer/lidar_overlay.py) on the exact synthetic street: world-coordinate points
on the scene's surfaces, colours by instance / intensity / range, edits followed, re-rendered only when needed."""

from __future__ import annotations

import shutil
import time
from dataclasses import replace

import numpy as np
import pytest

from helpers import edit_log
from simrecon.compose.scenes import open_scene
from simrecon.data.geometry import invert_pose
from simrecon.synth import GroundTruthScene
from simrecon.viewer.edits import ActorEdit, EditSession
from simrecon.viewer.lidar_overlay import (BACKGROUND_GREY, NO_INTENSITY_GREY, LidarOverlay, LidarOverlayConfig,
                                           LidarUnavailable, OverlayState, lidar_source, overlay_cloud,
                                           overlay_colors, render_overlay_sweep, sweep_inputs)
from simrecon.viewer.render import instance_color

SENSOR_HEIGHT_M = 1.9  # the synthetic roof lidar's height above the ground (docs/lidar.md)


@pytest.fixture(scope="module")
def session(synth_small):
    return EditSession(open_scene(synth_small), synth_small)


def _inside(points: np.ndarray, pose: np.ndarray, size: np.ndarray, margin: float = 0.05) -> np.ndarray:
    local = points @ invert_pose(pose)[:3, :3].T + invert_pose(pose)[:3, 3]
    return np.all(np.abs(local) <= np.asarray(size) / 2 + margin, axis=1)


def test_points_are_the_logged_sweep_in_world_coordinates(session):
    plan = session.plan()
    log = plan.log
    source = lidar_source(plan)
    assert source.name == "lidar" and source.sensor == log.lidar_sensors["lidar"]
    logged = log.lidar[2]
    inputs = sweep_inputs(source, plan, logged.timestamp)
    np.testing.assert_allclose(inputs.s2w, logged.s2w, atol=1e-9)  # ego pose x mount = the logged sensor pose
    sweep = render_overlay_sweep(source, inputs)
    np.testing.assert_allclose(sweep.points, logged.load_world(log.root)[:, :3], atol=1e-3)
    # they lie on the scene's surfaces: a large share of the background returns is the ground, at ground height
    ground_z = logged.s2w[2, 3] - SENSOR_HEIGHT_M
    background = sweep.points[sweep.instance == 0]
    assert np.mean(np.abs(background[:, 2] - ground_z) < 0.02) > 0.3
    assert background[:, 2].min() > ground_z - 0.02  # nothing below the ground
    np.testing.assert_allclose(sweep.range_m, np.linalg.norm(sweep.points - logged.s2w[:3, 3], axis=1), atol=1e-3)


def test_instance_colours_give_each_actor_its_colour(session):
    plan = session.plan()
    t = float(plan.log.lidar[2].timestamp)
    sweep = render_overlay_sweep(lidar_source(plan), sweep_inputs(lidar_source(plan), plan, t))
    colors = overlay_colors(sweep, "instance")
    assert np.all(colors[sweep.instance == 0] == BACKGROUND_GREY)
    seen = 0
    for k, name in enumerate(sweep.names, start=1):
        mine = sweep.instance == k
        if not mine.any():
            continue
        seen += 1
        assert np.all(colors[mine] == instance_color(name))  # the colour of the actor's box in the viewer
        actor = plan.actor(name)
        assert np.all(_inside(sweep.points[mine], actor.pose_at(t), actor.size)), name  # on the actor itself
    assert seen >= 2
    assert len({instance_color(n) for n in sweep.names}) == len(sweep.names)  # distinct per actor


def test_intensity_and_range_colours(session):
    plan = session.plan()
    source = lidar_source(plan)
    sweep = render_overlay_sweep(source, sweep_inputs(source, plan, float(plan.log.lidar[0].timestamp)))
    bright = overlay_colors(sweep, "intensity").astype(int).sum(axis=1)
    hi, lo = sweep.intensity > np.percentile(sweep.intensity, 90), sweep.intensity < np.percentile(sweep.intensity, 10)
    assert bright[hi].mean() > bright[lo].mean() + 100  # the ramp runs dark -> bright with intensity
    by_range = overlay_colors(sweep, "range").astype(float)
    close, far = sweep.range_m < np.percentile(sweep.range_m, 20), sweep.range_m > np.percentile(sweep.range_m, 80)
    assert np.linalg.norm(by_range[close].mean(axis=0) - by_range[far].mean(axis=0)) > 50
    blind = replace(sweep, intensity=None)  # a scene without an intensity model: grey, nothing invented
    assert np.all(overlay_colors(blind, "intensity") == NO_INTENSITY_GREY)
    with pytest.raises(ValueError, match="lidar colour mode"):
        overlay_colors(sweep, "height")


def test_removed_actor_points_vanish_and_moved_actor_follows(session):
    plan = session.plan()
    source = lidar_source(plan)
    t = float(plan.log.lidar[2].timestamp)
    car = plan.actor("car_1")
    full = render_overlay_sweep(source, sweep_inputs(source, plan, t))
    on_car = _inside(full.points, car.pose_at(t), car.size)
    assert (full.instance[on_car] == full.names.index("car_1") + 1).sum() > 50
    session.edits["car_1"] = ActorEdit(remove=True)
    try:
        edited_plan = session.plan()
        inputs = sweep_inputs(source, edited_plan, t)
        assert inputs.key(1) != sweep_inputs(source, plan, t).key(1)  # an edit asks for a new sweep
        gone = render_overlay_sweep(source, inputs)
    finally:
        session.edits.pop("car_1")
    assert "car_1" not in gone.names
    assert not _inside(gone.points, car.pose_at(t), car.size, margin=-0.05).any()  # nothing where the car was
    assert len(gone.points) >= len(full.points) - 5  # the background behind it returns instead
    session.edits["car_1"] = ActorEdit(translate=(0.0, 1.5, 0.0))
    try:
        moved_plan = session.plan()
        moved = render_overlay_sweep(source, sweep_inputs(source, moved_plan, t))
        new_pose = moved_plan.actor("car_1").pose_at(t)
    finally:
        session.edits.pop("car_1")
    k = moved.names.index("car_1") + 1
    assert (moved.instance == k).sum() > 50
    assert np.all(_inside(moved.points[moved.instance == k], new_pose, car.size))


def test_column_reduction_renders_fewer_rays(session):
    plan = session.plan()
    source = lidar_source(plan)
    inputs = sweep_inputs(source, plan, float(plan.log.lidar[1].timestamp))
    full, quarter = render_overlay_sweep(source, inputs, 1), render_overlay_sweep(source, inputs, 4)
    assert quarter.sensor.columns == source.sensor.columns // 4
    assert quarter.sensor.beam_elevations_deg == source.sensor.beam_elevations_deg
    assert 0.15 < len(quarter.points) / len(full.points) < 0.35
    assert inputs.key(4) != inputs.key(1)


def test_mode_off_adds_nothing(session):
    plan = session.plan()
    source = lidar_source(plan)
    sweep = render_overlay_sweep(source, sweep_inputs(source, plan, float(plan.log.lidar[0].timestamp)))
    assert overlay_cloud(sweep, "off") is None
    assert len(overlay_cloud(sweep, "range").points) == len(sweep.points)
    overlay = LidarOverlay(plan, lambda: OverlayState(1, float(plan.log.lidar[0].timestamp), plan, True))
    assert overlay.cfg.mode == "off"
    assert not overlay.step()
    assert overlay.renders == 0 and overlay.sweep is None and overlay.handle is None
    with pytest.raises(ValueError, match="lidar colour mode"):
        overlay.configure(LidarOverlayConfig(mode="height"))


class _CameraOnly:
    """A renderable scene without lidar."""

    def __init__(self, scene):
        self._scene = scene

    @property
    def log(self):
        return self._scene.log

    def render(self, *args, **kwargs):
        return self._scene.render(*args, **kwargs)


def test_scene_without_a_sensor_model_says_why(session, synth_small, tmp_path):
    plan = session.plan()
    with pytest.raises(LidarUnavailable, match="does not render lidar"):
        lidar_source(replace(plan, scene=_CameraOnly(plan.scene)))
    v1 = tmp_path / "log"  # the same drive as a v1 log: sweeps, but no sensor model and no beam/column layout
    shutil.copytree(synth_small / "log", v1)

    def to_v1(data):
        data.pop("lidar_sensors", None)
        data["simrecon_version"] = 1
        for s in data["lidar"]:
            s.pop("index_path", None)

    edit_log(v1, to_v1)
    old = EditSession(GroundTruthScene.from_log(v1), v1).plan()
    assert old.log.lidar and not old.log.lidar_sensors
    with pytest.raises(LidarUnavailable, match="no lidar sensor model"):
        lidar_source(old)
    overlay = LidarOverlay(old, lambda: OverlayState(1, 0.0, old, True))
    assert overlay.source is None and "lidar_sensors" in overlay.reason and "\n" not in overlay.reason
    overlay.configure(LidarOverlayConfig(mode="instance"))
    assert not overlay.step() and overlay.renders == 0


def _wait(cond, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "the viewer's render thread did not get there in time"
        time.sleep(0.02)


def test_running_viewer_renders_only_when_time_layout_or_mode_change(synth_small):
    pytest.importorskip("viser")
    from simrecon.viewer.app import SceneViewer

    scene = open_scene(synth_small)
    viewer = SceneViewer(scene, synth_small, port=0).start()
    try:
        lid = viewer.lidar_sweep
        assert lid.source is not None and not lid.gui_mode.disabled
        t = float(scene.log.lidar[1].timestamp)
        viewer.set_time(t)
        lid.gui_mode.value = "instance"
        _wait(lambda: lid.handle is not None)
        assert lid.renders == 1 and lid.sweep.inputs.time == pytest.approx(t)
        np.testing.assert_allclose(lid.sweep.points, scene.log.lidar[1].load_world(scene.log.root)[:, :3], atol=1e-3)
        lid.gui_mode.value = "range"  # a new colouring of the same sweep: no new render
        lid.gui_size.value = 0.15
        _wait(lambda: lid._shown is not None and lid._shown[1:] == ("range", 0.15))
        viewer.gui_mode.value = "depth"  # what the camera shows changed, not the sweep
        viewer._bump()
        _wait(lambda: lid._seen[0] == viewer.version)
        assert lid.renders == 1
        viewer.set_time(float(scene.log.lidar[3].timestamp))
        _wait(lambda: lid.renders == 2)
        assert viewer.set_edit("car_1", ActorEdit(remove=True))
        _wait(lambda: lid.renders == 3 and lid._shown is not None)
        assert "car_1" not in lid.sweep.names
        lid.gui_columns.value = "1/4"
        _wait(lambda: lid.renders == 4 and lid._shown is not None)
        assert lid.sweep.sensor.columns == scene.log.lidar_sensors["lidar"].columns // 4
        lid.gui_mode.value = "off"
        _wait(lambda: lid.handle is None)
        assert lid.renders == 4
    finally:
        viewer.stop()
