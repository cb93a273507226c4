"""Rotation helpers: quaternion round trips, slerp, OpenCV <-> OpenGL camera axes."""

import numpy as np
import pytest

from simrecon.data.geometry import (
    invert_pose, make_pose, matrix_to_quat, opencv_to_opengl, quat_to_matrix, rot_x, rot_y, rot_z, slerp,
)


@pytest.mark.parametrize("angles", [(0, 0, 0), (0.3, -1.2, 2.0), (np.pi, 0, 0), (0, np.pi, 0), (0, 0, np.pi),
                                    (np.pi / 2, np.pi / 2, 0)])
def test_quaternion_round_trip_including_half_turns(angles):
    rot = rot_z(angles[0]) @ rot_y(angles[1]) @ rot_x(angles[2])
    q = matrix_to_quat(rot)
    assert q[0] >= 0 and np.isclose(np.linalg.norm(q), 1)
    np.testing.assert_allclose(quat_to_matrix(q), rot, atol=1e-9)


def test_slerp_halfway_about_z_is_half_the_angle():
    q0, q1 = matrix_to_quat(rot_z(0.0)), matrix_to_quat(rot_z(np.pi / 2))
    np.testing.assert_allclose(quat_to_matrix(slerp(q0, q1, 0.5)), rot_z(np.pi / 4), atol=1e-9)
    # -q is the same rotation: slerp must take the short way round, not swing through 180+ degrees.
    np.testing.assert_allclose(quat_to_matrix(slerp(q0, -q1, 0.25)), rot_z(np.pi / 8), atol=1e-9)
    # Identical endpoints: the near-parallel branch returns the endpoint.
    np.testing.assert_allclose(slerp(q0, q0, 0.7), q0, atol=1e-12)


def test_invert_pose_is_the_inverse():
    pose = make_pose(rot_z(0.4) @ rot_x(-0.2), np.array([3.0, -2.0, 1.0]))
    np.testing.assert_allclose(invert_pose(pose) @ pose, np.eye(4), atol=1e-12)


def test_opencv_to_opengl_keeps_the_view_direction_and_flips_y_and_z():
    c2w_cv = make_pose(rot_z(0.3), np.array([1.0, 2.0, 3.0]))
    c2w_gl = opencv_to_opengl(c2w_cv)
    np.testing.assert_allclose(c2w_gl[:3, 2], -c2w_cv[:3, 2])  # GL looks along -z = CV's +z
    np.testing.assert_allclose(c2w_gl[:3, 1], -c2w_cv[:3, 1])  # GL y up = CV's -y (down)
    np.testing.assert_allclose(c2w_gl[:3, 0], c2w_cv[:3, 0])
    np.testing.assert_allclose(opencv_to_opengl(c2w_gl), c2w_cv)  # its own inverse
