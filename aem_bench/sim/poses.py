"""Small pose helpers shared by the scene, the cameras and the tasks."""

from __future__ import annotations

import numpy as np
import sapien


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> sapien.Pose:
    """Pose of a SAPIEN camera (x forward, y left, z up) at ``eye`` looking at ``target``."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    forward = (target - eye) / np.linalg.norm(target - eye)
    left = np.cross(up, forward)
    left /= np.linalg.norm(left)
    matrix = np.eye(4)
    matrix[:3, :3] = np.stack([forward, left, np.cross(forward, left)], axis=1)
    matrix[:3, 3] = eye
    return sapien.Pose(matrix)


def yaw_of(pose: sapien.Pose) -> float:
    """Heading (rad) of the pose's x axis in the table plane."""
    x_axis = pose.to_transformation_matrix()[:3, 0]
    return float(np.arctan2(x_axis[1], x_axis[0]))


def yaw_quat(yaw: float) -> np.ndarray:
    """Quaternion (w, x, y, z) of a rotation by ``yaw`` about the world z axis."""
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])
