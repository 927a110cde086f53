"""LiftPot: both arms grasp a pot by its two handles and lift it level.

After RoboTwin 2.0's ``lift_pot``. A pot (a cylinder with a handle on each side along y, one rigid
body) stands in the middle of the table, turned a little. The left arm grasps the +y handle, the
right arm the -y handle, and they lift together. Success (as RoboTwin): the pot's bottom at
least 10 cm above the table, the pot level (its axis within 10 degrees of vertical), and both
arms grasping it.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import sapien

from aem_bench.registration import register_task
from aem_bench.sim.motion import MotionPlanner, relative_pose
from aem_bench.sim.panda import GRIPPER_CLOSED
from aem_bench.sim.poses import yaw_of, yaw_quat
from aem_bench.sim.reward import closeness
from aem_bench.sim.tabletop import TableTopEnv

from ._containers import SIDE_SIGN, Part, build_composite, tilt

POT_RADIUS, POT_HALF_HEIGHT = 0.06, 0.05  # m: 12 cm wide, 10 cm tall
HANDLE_HALF_SIZE = (0.015, 0.03, 0.01)  # across (the fingers close along x), outwards, up
HANDLE_Y = POT_RADIUS + HANDLE_HALF_SIZE[1]  # handle centres, from the pot's axis
HANDLE_Z = POT_HALF_HEIGHT - 0.02  # handle centres, from the pot's centre: near the rim
LIFT_GOAL = 0.10  # m: the pot's bottom above the table
LIFT_PLAN = 0.15  # the expert lifts the pot's bottom this high
SUCCESS_TILT = np.deg2rad(10.0)
POT_XY, POT_YAW = 0.03, 0.2  # m, rad: v0's pot within +-3 cm in x and y, +-0.2 rad of yaw
POT_X_V1, POT_Y_V1, POT_YAW_V1 = 0.10, 0.06, 0.8  # v1's


def _pot_parts() -> list[Part]:
    body, handle = (0.25, 0.45, 0.55), (0.1, 0.1, 0.1)
    return [
        Part("cylinder", (POT_RADIUS, POT_HALF_HEIGHT), (0.0, 0.0, 0.0), body),
        Part("box", HANDLE_HALF_SIZE, (0.0, HANDLE_Y, HANDLE_Z), handle),
        Part("box", HANDLE_HALF_SIZE, (0.0, -HANDLE_Y, HANDLE_Z), handle),
        # A dark disc on top reads as the pot's opening.
        Part("cylinder", (POT_RADIUS - 0.006, 0.0005), (0.0, 0.0, POT_HALF_HEIGHT),
             (0.08, 0.12, 0.15), solid=False),
    ]


@register_task("AEM/LiftPot-v0", max_episode_steps=150, arms=2, skills=("bimanual", "lift"))
class LiftPotEnv(TableTopEnv):
    """Grasp the pot by both handles and lift it level."""

    def _load_scene(self) -> None:
        self.pot = build_composite(self, "pot", _pot_parts(), radius=HANDLE_Y + HANDLE_HALF_SIZE[1],
                                   density=300.0)

    # The layout's randomisation (a new version of the task widens it): near the middle, where
    # both arms reach their handle.
    pot_max_x: ClassVar[float] = POT_XY
    pot_max_y: ClassVar[float] = POT_XY
    pot_max_yaw: ClassVar[float] = POT_YAW

    def _initialize_episode(self, rng: np.random.Generator) -> None:
        reach = np.array([self.pot_max_x, self.pot_max_y])
        pot_xy = rng.uniform(-reach, reach)
        yaw = rng.uniform(-self.pot_max_yaw, self.pot_max_yaw)
        self.set_actor_pose(self.pot, sapien.Pose([*pot_xy, POT_HALF_HEIGHT], yaw_quat(yaw)))

    # --- geometry ----------------------------------------------------------------------------
    def _handle(self, side: str) -> np.ndarray:
        """The centre of the handle the ``side`` arm grasps (left: +y, right: -y)."""
        return (self.pot.pose * sapien.Pose([0.0, SIDE_SIGN[side] * HANDLE_Y, HANDLE_Z])).p

    def evaluate(self) -> dict:
        bottom = float(self.pot.pose.p[2] - POT_HALF_HEIGHT)
        lifted = bottom >= LIFT_GOAL
        level = tilt(self.pot.pose) < SUCCESS_TILT
        grasping = self.grasping_arms(self.pot)
        both = grasping == {"left", "right"}
        return {
            "success": lifted and level and both,
            "pot_lifted": lifted,
            "pot_level": level,
            "left_grasping": "left" in grasping,
            "right_grasping": "right" in grasping,
            "pot_bottom_height": bottom,
        }

    def compute_dense_reward(self, info: dict) -> float:
        """Staged reward in [0, 1]: reach both handles, grasp both, lift level."""
        if info["success"]:
            return 1.0
        if info["left_grasping"] and info["right_grasping"]:
            height = np.clip(info["pot_bottom_height"] / LIFT_GOAL, 0.0, 1.0)
            stage = 2.0 + height * (1.0 if info["pot_level"] else 0.5)
        else:
            grasps = [closeness(self.arms[side].tcp_pose.p, self._handle(side))
                      + info[f"{side}_grasping"] for side in ("left", "right")]
            stage = float(np.mean(grasps))
        return float(stage / 3.0)

    # --- scripted expert ---------------------------------------------------------------------
    def expert(self):
        plan = MotionPlanner(self)
        up = np.array([0.0, 0.0, 0.10])
        # Both hands over their handles, fingers closing across them (along the pot's x).
        yaw = yaw_of(self.pot.pose)
        grasps = {side: plan.top_down(side, self._handle(side), yaw) for side in ("left", "right")}
        yield from plan.move(25, **{side: sapien.Pose(pose.p + up, pose.q)
                                    for side, pose in grasps.items()})
        yield from plan.move(15, **grasps)
        yield from plan.gripper(10, left=GRIPPER_CLOSED, right=GRIPPER_CLOSED)
        # Lift together: each hand keeps its grip on a pot that rises level.
        pot_in_hand = {side: relative_pose(self.arms[side].tcp_pose, self.pot.pose)
                       for side in grasps}
        lifted = sapien.Pose(self.pot.pose.p + [0.0, 0.0, LIFT_PLAN], yaw_quat(yaw))
        yield from plan.move(30, **{side: lifted * grip.inv() for side, grip in pot_in_hand.items()})
        yield from plan.hold(10)


@register_task("AEM/LiftPot-v1", max_episode_steps=150, arms=2, skills=("bimanual", "lift"),
               supersedes="AEM/LiftPot-v0")
class LiftPotV1Env(LiftPotEnv):
    """LiftPot with the pot's place and turn randomised widely enough to need eyes.

    Description / Success: as ``AEM/LiftPot-v0``.

    Randomizations: the pot's x within +-``POT_X_V1``, y within +-``POT_Y_V1`` and yaw within
    +-``POT_YAW_V1`` rad (v0: x and y +-3 cm, yaw +-0.2 rad).

    Why a new version: v0's pot barely moves, so the expert's actions of one seed, replayed
    open-loop on another, lift it 38% of the time (19/50, ``aem-bench tasks --measure-blind
    --pairs 50``): a policy could succeed without looking.
    """

    pot_max_x = POT_X_V1
    pot_max_y = POT_Y_V1
    pot_max_yaw = POT_YAW_V1
