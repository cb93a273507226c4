"""Bird's-eye geometry of the simulator against hand-computed cases: box overlap (separating axes), time to
collision, points in polygons, distances to polylines, the drivable area, and the route's projection."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simrecon.data.geometry import make_pose, rot_z
from simrecon.sim.geometry import (Box2D, DrivableArea, boxes_overlap, distance_to_polyline, extend_polyline,
                                   point_in_polygon, time_to_collision)
from simrecon.sim.route import Route

R2 = math.sqrt(2.0)


def box(x, y, yaw=0.0, length=4.0, width=2.0) -> Box2D:
    return Box2D(np.array([x, y], float), yaw, length, width)


def test_box_corners_and_pose():
    b = Box2D.from_pose(make_pose(rot_z(math.pi / 2), np.array([1.0, 2.0, 5.0])), [4.0, 2.0, 1.5])
    assert b.yaw == pytest.approx(math.pi / 2) and b.length == 4.0 and b.width == 2.0
    assert np.allclose(b.corners(), [[0, 4], [0, 0], [2, 0], [2, 4]], atol=1e-12)  # front-left first, CCW


def test_axis_aligned_overlap_separation_and_touching():
    a = box(0, 0)  # x in [-2, 2], y in [-1, 1]
    assert boxes_overlap(a, box(3.9, 0)) and boxes_overlap(a, box(0, 1.9))
    assert not boxes_overlap(a, box(4.1, 0)) and not boxes_overlap(a, box(0, 2.1))
    assert not boxes_overlap(a, box(4.0, 0))  # touching edges: no area in common


def test_rotated_square_reaches_in_by_its_corner():
    a = box(0, 0, length=2.0, width=2.0)  # x in [-1, 1]
    # a 2x2 square turned 45 degrees reaches sqrt(2) from its centre along x
    assert boxes_overlap(a, box(1 + R2 - 0.01, 0.0, math.pi / 4, 2.0, 2.0))
    assert not boxes_overlap(a, box(1 + R2 + 0.01, 0.0, math.pi / 4, 2.0, 2.0))


def test_separating_axis_of_a_rotated_box_where_the_bounding_boxes_overlap():
    thin = box(0, 0, math.pi / 4, length=10.0, width=0.2)  # along y = x; its bounding box spans +-3.6
    small = box(2.0, -2.0, 0.0, 0.5, 0.5)  # inside that bounding box, 2.83 m from the thin box's axis
    assert not boxes_overlap(thin, small)
    assert boxes_overlap(thin, box(2.0, 2.0, 0.0, 0.5, 0.5))


def test_time_to_collision_closed_forms():
    ego = box(0, 0)  # 4 x 2
    assert time_to_collision(ego, [10, 0], box(30, 0), [0, 0]) == pytest.approx(26 / 10)  # gap 30 - 2 - 2
    assert time_to_collision(ego, [10, 0], box(30, 0), [-5, 0]) == pytest.approx(26 / 15)  # head on
    crossing = box(30, 0, math.pi / 2)  # turned: 2 m deep along x
    assert time_to_collision(ego, [10, 0], crossing, [0, 0]) == pytest.approx(27 / 10)
    assert time_to_collision(ego, [10, 0], box(30, 3.5), [0, 0]) == math.inf  # the next lane
    assert time_to_collision(ego, [10, 0], box(30, 0), [12, 0]) == math.inf  # pulling away
    assert time_to_collision(ego, [0, 0], box(1, 0), [0, 0]) == 0.0  # overlapping now
    assert time_to_collision(ego, [10, 0], box(30, 0), [0, 0], horizon=2.0) == math.inf
    # a car crossing from the side: it reaches the ego's lane (y = 1 + 1) after (10 - 2) / 4 s
    side = box(0.0, 10.0, -math.pi / 2)  # 4 long along y, heading -y
    assert time_to_collision(ego, [0, 0], side, [0, -4]) == pytest.approx((10 - 2 - 1) / 4)


def test_point_in_polygon_convex_and_concave():
    square = [[0, 0], [4, 0], [4, 4], [0, 4]]
    assert list(point_in_polygon([[1, 1], [5, 1], [-0.1, 2], [3.9, 3.9]], square)) == [True, False, False, True]
    ell = [[0, 0], [4, 0], [4, 1], [1, 1], [1, 4], [0, 4]]  # an L
    assert list(point_in_polygon([[0.5, 3], [3, 0.5], [3, 3], [2, 2]], ell)) == [True, True, False, False]


def test_distance_to_polyline_and_extension():
    line = [[0, 0], [10, 0], [10, 10]]
    d = distance_to_polyline([[5, 3], [12, 5], [-3, -4], [10, 0]], line)
    assert d == pytest.approx([3, 2, 5, 0])
    ext = extend_polyline(line, 5.0)
    assert np.allclose(ext[0], [-5, 0]) and np.allclose(ext[-1], [10, 15]) and len(ext) == 5
    assert distance_to_polyline([[0, 0]], [[1, 1], [1, 1]])[0] == pytest.approx(R2)  # a single point


def test_drivable_area_is_the_corridor_or_the_polygons():
    area = DrivableArea([np.array([[0, 0], [100, 0]])], 2.5, [np.array([[50, 10], [60, 10], [60, 20], [50, 20]])])
    inside = area.contains([[10, 2.4], [10, -2.6], [55, 15], [55, 8], [-2, 0]])
    assert list(inside) == [True, False, True, False, True]


def test_route_projection_progress_and_points_ahead():
    times = np.arange(5.0)
    poses = np.stack([make_pose(rot_z(0.0), np.array([8.0 * t, -1.75, 0.5])) for t in times])
    route = Route(times, poses)
    assert route.length == pytest.approx(32.0)
    assert route.project((10.0, -0.75)) == pytest.approx((10.0, 1.0))  # 1 m left of the route
    assert route.project((40.0, -2.75)) == pytest.approx((40.0, -1.0))  # beyond the end it continues straight
    assert route.s_at_time(1.5) == pytest.approx(12.0) and route.speed_at_time(2.2) == pytest.approx(8.0)
    assert route.ground_at(5.0)[0] == pytest.approx(0.5)
    pts = route.ahead(10.0, np.array([10.0, -0.75]), math.pi / 2, 3, 2.0)  # ego turned left, 1 m left of it
    assert np.allclose(pts, [[-1, -2], [-1, -4], [-1, -6]])  # the route is to its right (-y), behind (-x)
    assert np.allclose(route.ahead(30.0, np.array([30.0, -1.75]), 0.0, 3, 2.0), [[2, 0], [2, 0], [2, 0]])
