"""Shared helpers for the tasks with moving parts built in code (bell, drawer) and their checks.

Registers nothing: ``tasks/__init__`` imports every module here, so this one only defines.
"""

from __future__ import annotations

import numpy as np
import sapien

from aem_bench.sim.poses import yaw_quat

FINGERTIP_BELOW_TCP = 0.009  # m: the fingertip pads reach this far below the TCP
# Rotations that turn x (the axis of PhysX's joints and SAPIEN's cylinders) onto -z and onto y.
X_TO_DOWN = np.array([np.sqrt(0.5), 0.0, np.sqrt(0.5), 0.0])
X_TO_Y = yaw_quat(np.pi / 2)


def add_prismatic_link(articulation_builder, parent, name: str, axis_quat, limits,
                       friction: float = 0.0, damping: float = 0.0):
    """A child link sliding along the x axis of ``axis_quat`` (in the parent's frame), which
    starts at the parent's origin: the link's frame coincides with the parent's at qpos 0."""
    link = articulation_builder.create_link_builder(parent)
    link.set_name(name)
    link.set_joint_name(f"{name}_joint")
    axis = sapien.Pose(q=axis_quat)
    link.set_joint_properties("prismatic", limits=[list(limits)], pose_in_parent=axis,
                              pose_in_child=axis, friction=friction, damping=damping)
    return link


def reset_articulation(articulation, root_pose: sapien.Pose, qpos) -> None:
    """Move an articulation with a fixed root and stop it (a reset keeps no velocity)."""
    articulation.set_root_pose(root_pose)
    qpos = np.asarray(qpos, dtype=np.float64)
    articulation.set_qpos(qpos)
    articulation.set_qvel(np.zeros_like(qpos))


