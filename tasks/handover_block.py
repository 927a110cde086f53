"""HandoverBlock: the left arm picks a bar, hands it to the right arm in the air, which places it.

After RoboTwin 2.0's ``handover_block``. The bar starts on the left half of the table at a random
position and yaw; a blue pad marks the goal on the right half. Success (as RoboTwin): the bar's
centre within 3 cm of the pad centre in x and y, resting on the table (its bottom within 1 cm of
the pad surface in z), and the right gripper open.

Both grippers grasp from above, so the block is a 18 cm bar: the two grasp points, 11 cm apart,
leave room for both hands (a small cube would need one hand tilted).
"""

from __future__ import annotations

import numpy as np
import sapien

from aem_bench.registration import register_task
from aem_bench.sim.motion import HOVER, MotionPlanner, relative_pose
from aem_bench.sim.panda import ARM_DOF, GRIPPER_OPEN
from aem_bench.sim.poses import yaw_quat
from aem_bench.sim.reward import closeness
from aem_bench.sim.tabletop import TableTopEnv

BAR_HALF_SIZE = (0.02, 0.09, 0.02)  # along x, along y (the bar's axis), up
GRASP_OFFSET = 0.055  # grasp points sit this far from the bar centre along its axis
PAD_HALF_SIZE = (0.05, 0.11, 0.001)
TRANSFER_POINT = np.array([0.0, 0.0, 0.25])  # where the bar centre is handed over
SUCCESS_XY, SUCCESS_Z = 0.03, 0.01


@register_task("AEM/HandoverBlock-v0", max_episode_steps=400, arms=2,
               skills=("pick", "handover", "place"))
class HandoverBlockEnv(TableTopEnv):
    """Hand a bar from the left arm to the right arm and place it on the pad."""

    def _load_scene(self) -> None:
        self.bar = self.add_box("bar", BAR_HALF_SIZE, (0.85, 0.12, 0.1))
        self.pad = self.add_visual_box("pad", PAD_HALF_SIZE, (0.15, 0.3, 0.85))

    def _initialize_episode(self, rng: np.random.Generator) -> None:
        bar_xy = rng.uniform([-0.08, 0.06], [0.08, 0.18])
        bar_yaw = rng.uniform(-0.3, 0.3)
        self.set_actor_pose(self.bar, sapien.Pose([*bar_xy, BAR_HALF_SIZE[2]], yaw_quat(bar_yaw)))
        pad_xy = rng.uniform([-0.08, -0.18], [0.08, -0.06])
        self.pad.set_pose(sapien.Pose([*pad_xy, PAD_HALF_SIZE[2]]))

    # --- geometry ----------------------------------------------------------------------------
    def _grasp_point(self, sign: float) -> np.ndarray:
        """The left (+1) or right (-1) grasp point on the bar, in the world frame."""
        return (self.bar.pose * sapien.Pose([0, sign * GRASP_OFFSET, 0])).p

    @property
    def _bar_yaw(self) -> float:
        axis = self.bar.pose.to_transformation_matrix()[:3, 1]
        return float(np.arctan2(-axis[0], axis[1]))

    def evaluate(self) -> dict:
        bar = self.bar.pose.p
        pad = self.pad.pose.p
        pad_top = pad[2] + PAD_HALF_SIZE[2]
        right = self.arms["right"]
        on_pad_xy = bool(np.all(np.abs(bar[:2] - pad[:2]) < SUCCESS_XY))
        resting = bool(abs(bar[2] - BAR_HALF_SIZE[2] - pad_top) < SUCCESS_Z)
        right_open = right.is_open
        grasping = self.grasping_arms(self.bar)
        return {
            "success": on_pad_xy and resting and right_open,
            "bar_on_pad_xy": on_pad_xy,
            "bar_resting": resting,
            "right_gripper_open": right_open,
            "left_grasping": "left" in grasping,
            "right_grasping": "right" in grasping,
            "bar_height": float(bar[2] - BAR_HALF_SIZE[2]),
        }

    def compute_dense_reward(self, info: dict) -> float:
        """Staged reward in [0, 1]: reach, grasp, transfer, regrasp, place, release."""
        if info["success"]:
            return 1.0
        bar = self.bar.pose.p
        left_tcp, right_tcp = self.arms["left"].tcp_pose.p, self.arms["right"].tcp_pose.p
        if info["bar_on_pad_xy"] and info["bar_resting"] and not info["left_grasping"]:
            stage = 6.0 + self.arms["right"].qpos[ARM_DOF] / GRIPPER_OPEN
        elif info["right_grasping"]:
            place_goal = np.append(self.pad.pose.p[:2], BAR_HALF_SIZE[2])
            stage = 5.0 + closeness(bar, place_goal) - 0.5 * info["left_grasping"]
        elif info["left_grasping"]:
            at_transfer = closeness(bar, TRANSFER_POINT)
            stage = 2.0 + at_transfer + at_transfer * closeness(right_tcp, self._grasp_point(-1))
        else:
            stage = closeness(left_tcp, self._grasp_point(+1))
        return float(stage / 7.0)

    # --- scripted expert ---------------------------------------------------------------------
    def expert(self):
        plan = MotionPlanner(self)
        up = np.array([0.0, 0.0, HOVER])
        # 1. The left hand picks the bar at its left end.
        yaw = self._bar_yaw
        grasp = self._grasp_point(+1)
        pose = plan.top_down("left", grasp, yaw)
        yield from plan.move(25, left=sapien.Pose(grasp + up, pose.q))
        yield from plan.move(15, left=pose)
        yield from plan.close("left")
        # 2. Carry it to the transfer point, turned along y; the right hand waits above.
        bar_in_left = relative_pose(self.arms["left"].tcp_pose, self.bar.pose)
        bar_goal = sapien.Pose(TRANSFER_POINT)
        right_wait = TRANSFER_POINT + [0.0, -GRASP_OFFSET, 0.0] + up
        yield from plan.move(35, left=bar_goal * bar_in_left.inv(),
                             right=plan.top_down("right", right_wait, 0.0))
        # 3. The right hand grasps the bar's right end, then the left hand lets go and leaves.
        yaw = self._bar_yaw
        grasp = self._grasp_point(-1)
        pose = plan.top_down("right", grasp, yaw)
        yield from plan.move(10, right=sapien.Pose(grasp + up, pose.q))
        yield from plan.move(15, right=pose)
        yield from plan.close("right")
        yield from plan.open("left")
        left_tcp = self.arms["left"].tcp_pose
        yield from plan.move(15, left=sapien.Pose(left_tcp.p + [0.0, 0.05, HOVER], left_tcp.q))
        # 4. The right hand sets the bar down on the pad (level, as held) and opens.
        place = np.append(self.pad.pose.p[:2], BAR_HALF_SIZE[2] + 0.004)
        yield from plan.place("right", self.bar, place, goal_quat=[1.0, 0.0, 0.0, 0.0])
