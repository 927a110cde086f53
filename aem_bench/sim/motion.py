"""Scripted motion for experts: IK waypoints joined by smooth joint-space interpolation.

An expert is a generator that yields actions; it reads the simulator state only when it plans
the next segment, so each segment starts from where the robot really is (closed loop between
waypoints). SAPIEN's own Pinocchio IK replaces mplib, whose 0.1.1 build segfaults under numpy 2.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import sapien

from aem_bench.sim.panda import ARM_DOF, GRIPPER_CLOSED, GRIPPER_OPEN

ARM_SLICES = {"left": slice(0, 8), "right": slice(8, 16)}
HOVER = 0.10  # m above a grasp or place point where approaches start and retreats end


def arm_for(y: float) -> str:
    """The arm whose half of the table holds ``y`` (the left arm's base is at positive y); the
    middle line goes to the left arm."""
    return "left" if y >= 0.0 else "right"


class ExpertFailure(RuntimeError):
    """The expert found no motion (an IK target out of reach); the episode is not solvable."""


def top_down_pose(position, closing_yaw: float) -> sapien.Pose:
    """TCP pose pointing straight down, fingers closing along the horizontal angle ``closing_yaw``.

    The TCP frame has z along the fingers and y along the direction in which they close.
    """
    c, s = np.cos(closing_yaw), np.sin(closing_yaw)
    matrix = np.eye(4)
    matrix[:3, :3] = np.array([[-s, c, 0.0], [c, s, 0.0], [0.0, 0.0, -1.0]]).T
    matrix[:3, 3] = position
    return sapien.Pose(matrix)


def relative_pose(frame: sapien.Pose, pose: sapien.Pose) -> sapien.Pose:
    """``pose`` expressed in ``frame``: grasp offsets measured once and reused while holding."""
    return frame.inv() * pose


class MotionPlanner:
    """Turns arm goals into a stream of 16-d joint-target actions for a :class:`TableTopEnv`."""

    def __init__(self, env):
        self.env = env
        self.command = env.qpos.astype(np.float64)  # the last target sent, per joint
        self.start = self.command.copy()  # the joints when the expert took over

    def solve_ik(self, side: str, tcp_pose: sapien.Pose) -> np.ndarray:
        arm = self.env.arms[side]
        q = arm.inverse_kinematics(tcp_pose, self.command[ARM_SLICES[side]][:ARM_DOF])
        if q is None:
            raise ExpertFailure(f"no IK solution for the {side} arm at {tcp_pose}")
        return q

    def top_down(self, side: str, position, closing_yaw: float) -> sapien.Pose:
        """A top-down grasp pose at ``position``. The fingers are symmetric, so of the two
        orientations 180 degrees apart take the one that turns the wrist least."""
        current = self.command[ARM_SLICES[side]][:ARM_DOF]
        best, best_cost = None, np.inf
        for yaw in (closing_yaw, closing_yaw + np.pi):
            pose = top_down_pose(position, yaw)
            q = self.env.arms[side].inverse_kinematics(pose, current)
            if q is not None and np.abs(q - current).sum() < best_cost:
                best, best_cost = pose, np.abs(q - current).sum()
        if best is None:
            raise ExpertFailure(f"no top-down IK solution for the {side} arm at {position}")
        return best

    def move(self, steps: int, grippers: dict[str, float] | None = None,
             **tcp_goals: sapien.Pose) -> Iterator[np.ndarray]:
        """Move the named arms' TCPs to their goals (and grippers to widths) in ``steps`` steps."""
        goal = self.command.copy()
        for side, pose in tcp_goals.items():
            goal[ARM_SLICES[side]][:ARM_DOF] = self.solve_ik(side, pose)
        for side, finger in (grippers or {}).items():
            goal[ARM_SLICES[side]][ARM_DOF] = finger
        yield from self._interpolate(goal, steps)

    def gripper(self, steps: int, **fingers: float) -> Iterator[np.ndarray]:
        yield from self.move(steps, grippers=fingers)

    def open(self, side: str, steps: int = 8) -> Iterator[np.ndarray]:
        yield from self.gripper(steps, **{side: GRIPPER_OPEN})

    def close(self, side: str, steps: int = 10) -> Iterator[np.ndarray]:
        yield from self.gripper(steps, **{side: GRIPPER_CLOSED})

    def go_back(self, steps: int, *sides: str, offset: float = 0.0) -> Iterator[np.ndarray]:
        """Move the named arms, grippers included, back to their joints when the expert took
        over, in joint space: wherever the arm went, it ends in the same configuration.
        ``offset`` (rad) is added to every arm joint of that goal (not the gripper's): a waypoint
        near the start, from which every return takes the same last stretch."""
        goal = self.command.copy()
        for side in sides:
            goal[ARM_SLICES[side]] = self.start[ARM_SLICES[side]]
            goal[ARM_SLICES[side]][:ARM_DOF] += offset
        yield from self._interpolate(goal, steps)

    def hold(self, steps: int) -> Iterator[np.ndarray]:
        yield from self._interpolate(self.command.copy(), steps)

    # --- common skills ---------------------------------------------------------------------
    def pick(self, side: str, grasp_point, closing_yaw: float, hover: float = HOVER,
             approach_steps: int = 25, descend_steps: int = 15,
             lift: float | None = None) -> Iterator[np.ndarray]:
        """Top-down grasp at ``grasp_point`` (world), then lift by ``lift`` (default ``hover``)."""
        grasp_point = np.asarray(grasp_point, dtype=np.float64)
        pose = self.top_down(side, grasp_point, closing_yaw)
        above = sapien.Pose(grasp_point + [0.0, 0.0, hover], pose.q)
        yield from self.move(approach_steps, **{side: above})
        yield from self.move(descend_steps, **{side: pose})
        yield from self.close(side)
        lifted = grasp_point + [0.0, 0.0, hover if lift is None else lift]
        yield from self.move(descend_steps, **{side: sapien.Pose(lifted, pose.q)})

    def place(self, side: str, held: sapien.Entity, goal, goal_quat=None, hover: float = HOVER,
              carry_steps: int = 30, descend_steps: int = 15,
              release: bool = True) -> Iterator[np.ndarray]:
        """Carry the grasped ``held`` object so its centre ends at ``goal`` (world), lower it
        from ``hover`` above, open and retreat. ``goal_quat`` is the object's final orientation
        (default: as held now). The grasp offset is measured once, when the carry starts."""
        arm = self.env.arms[side]
        held_in_tcp = relative_pose(arm.tcp_pose, held.pose)
        quat = held.pose.q if goal_quat is None else goal_quat
        goal = np.asarray(goal, dtype=np.float64)
        above = sapien.Pose(goal + [0.0, 0.0, hover], quat)
        yield from self.move(carry_steps, **{side: above * held_in_tcp.inv()})
        yield from self.move(descend_steps, **{side: sapien.Pose(goal, quat) * held_in_tcp.inv()})
        if release:
            yield from self.open(side)
            yield from self.retreat(side, hover)

    def retreat(self, side: str, height: float = HOVER, steps: int = 10) -> Iterator[np.ndarray]:
        """Straight up by ``height``, keeping the hand's orientation."""
        tcp = self.env.arms[side].tcp_pose
        yield from self.move(steps, **{side: sapien.Pose(tcp.p + [0.0, 0.0, height], tcp.q)})

    def _interpolate(self, goal: np.ndarray, steps: int) -> Iterator[np.ndarray]:
        start = self.command.copy()
        for i in range(1, steps + 1):
            # Cosine easing: zero velocity at both ends keeps grasped objects from slipping.
            alpha = 0.5 - 0.5 * np.cos(np.pi * i / steps)
            self.command = start + alpha * (goal - start)
            yield self.command.astype(np.float32)
