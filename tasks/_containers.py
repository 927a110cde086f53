"""Shared pieces of the container tasks (basket, cup and plate, hammer, pot).

Composite bodies made of boxes and upright cylinders, and the small geometric checks their
success rules share. A helper module: it registers nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sapien

from aem_bench.sim.panda import ARM_DOF, GRIPPER_OPEN
from aem_bench.sim.reward import closeness

SIDE_SIGN = {"left": 1.0, "right": -1.0}  # each arm works on its own half of the table (y sign)
_UPRIGHT = sapien.Pose(q=[np.sqrt(0.5), 0.0, np.sqrt(0.5), 0.0])  # SAPIEN cylinders lie along x


@dataclass(frozen=True)
class Part:
    """One primitive of a composite body, placed in the body's frame.

    ``size`` is a box's half size (x, y, z) or a cylinder's (radius, half height); cylinders
    stand upright. ``solid=False`` parts are seen but never touched (decals).
    """

    shape: str  # "box" or "cylinder"
    size: tuple[float, ...]
    position: tuple[float, float, float]
    colour: tuple[float, ...]
    solid: bool = True


def build_composite(env, name: str, parts: list[Part], radius: float, static: bool = False,
                    density: float = 500.0, friction: float = 1.0) -> sapien.Entity:
    """One rigid actor made of ``parts``, tracked as a task object of footprint ``radius``.

    Its collision shapes come in the order of the solid parts (see :func:`collision_shapes`).
    """
    builder = env.scene.create_actor_builder()
    material = sapien.physx.PhysxMaterial(friction, friction, 0.0)
    for part in parts:
        if part.shape == "box":
            pose = sapien.Pose(part.position)
            if part.solid:
                builder.add_box_collision(pose, part.size, material=material, density=density)
            builder.add_box_visual(pose, part.size, material=part.colour)
        else:
            pose = sapien.Pose(part.position) * _UPRIGHT
            radius_, half_height = part.size
            if part.solid:
                builder.add_cylinder_collision(pose, radius_, half_height, material=material,
                                               density=density)
            builder.add_cylinder_visual(pose, radius_, half_height, material=part.colour)
    entity = builder.build_static(name=name) if static else builder.build(name=name)
    env.track(entity, radius)
    return entity


def collision_shapes(entity: sapien.Entity) -> list:
    """The entity's collision shapes, in the order its solid parts were added."""
    body = entity.find_component_by_type(sapien.physx.PhysxRigidBaseComponent)
    return list(body.get_collision_shapes())


def tilt(pose: sapien.Pose) -> float:
    """Angle (rad) between the body's z axis and the world's z axis."""
    up = pose.to_transformation_matrix()[:3, 2]
    return float(np.arccos(np.clip(up[2], -1.0, 1.0)))


def in_frame(pose: sapien.Pose, point) -> np.ndarray:
    """``point`` (world) in the frame of ``pose``."""
    return (pose.inv() * sapien.Pose(np.asarray(point, dtype=np.float64))).p


def nearest_arm(env, point) -> str:
    """The arm whose TCP is closest to ``point``: the one that just let go of an object there."""
    return min(env.arms, key=lambda side: np.linalg.norm(env.arms[side].tcp_pose.p - point))




def pick_and_place_reward(env, side: str, held: sapien.Entity, grasp_point, goal,
                          placed: bool, grasped: bool) -> float:
    """Staged reward in [0, 1) of a one-arm pick and place (1.0 on success is the caller's):
    reach the grasp point, grasp, carry ``held`` to ``goal``, then open the gripper."""
    arm = env.arms[side]
    if placed:
        stage = 3.0 + arm.qpos[ARM_DOF] / GRIPPER_OPEN
    elif grasped:
        stage = 1.0 + 2.0 * closeness(held.pose.p, goal)
    else:
        stage = closeness(arm.tcp_pose.p, grasp_point)
    return float(stage / 4.0)
