"""PlaceObjectBasket: pick a can and put it into an open basket.

After RoboTwin 2.0's ``place_object_basket`` (without its final push of the basket). A red can
stands on one half of the table; a blue basket (a floor plate and four low walls, one rigid
body) stands nearer the middle. The arm on the can's side picks it and lowers it into the
basket. Success: the can's centre inside the basket's inner walls (in the basket's frame, x and
y) and below the top of the walls, no hand holding it, and the nearest gripper open.
"""

from __future__ import annotations

import numpy as np
import sapien

from aem_bench.registration import register_task
from aem_bench.sim.motion import MotionPlanner
from aem_bench.sim.poses import yaw_quat
from aem_bench.sim.tabletop import TableTopEnv

from ._containers import (
    SIDE_SIGN,
    Part,
    build_composite,
    in_frame,
    nearest_arm,
    pick_and_place_reward,
)

CAN_RADIUS, CAN_HALF_HEIGHT = 0.02, 0.04  # m: a 4 cm wide, 8 cm tall can
GRASP_BELOW_TOP = 0.02  # grasp the can this far below its top: the fingers stay above the walls
BASKET_INNER_HALF = 0.07  # m: the inside is 14 cm square
BASKET_FLOOR_HALF = 0.005  # half thickness of the floor plate
BASKET_WALL_HALF = 0.005  # half thickness of a wall
BASKET_WALL_TOP = 0.06  # m above the table
DROP_HEIGHT = 0.01  # the can is let go this far above the basket floor


def _basket_parts() -> list[Part]:
    """The floor plate and four walls, in a frame at the centre of the floor plate."""
    colour = (0.2, 0.35, 0.8)
    wall_half_height = BASKET_WALL_TOP / 2
    wall_z = wall_half_height - BASKET_FLOOR_HALF  # the walls stand on the table too
    outer = BASKET_INNER_HALF + BASKET_WALL_HALF
    parts = [Part("box", (BASKET_INNER_HALF, BASKET_INNER_HALF, BASKET_FLOOR_HALF), (0, 0, 0),
                  colour)]
    for sign in (1.0, -1.0):
        parts.append(Part("box", (BASKET_WALL_HALF, outer + BASKET_WALL_HALF, wall_half_height),
                          (sign * outer, 0.0, wall_z), colour))
        parts.append(Part("box", (BASKET_INNER_HALF, BASKET_WALL_HALF, wall_half_height),
                          (0.0, sign * outer, wall_z), colour))
    return parts


@register_task("AEM/PlaceObjectBasket-v0", max_episode_steps=240, arms=1,
               skills=("pick", "place"))
class PlaceObjectBasketEnv(TableTopEnv):
    """Pick a can and put it into the basket."""

    def _load_scene(self) -> None:
        self.can = self.add_cylinder("can", CAN_RADIUS, CAN_HALF_HEIGHT, (0.85, 0.15, 0.1))
        outer = BASKET_INNER_HALF + 2 * BASKET_WALL_HALF
        self.basket = build_composite(self, "basket", _basket_parts(), radius=np.sqrt(2) * outer,
                                      density=300.0)
        self.side = "left"

    def _initialize_episode(self, rng: np.random.Generator) -> None:
        # The can on one half; the basket between it and the middle, so one arm reaches both.
        self.side = ("left", "right")[int(rng.integers(2))]
        sign = SIDE_SIGN[self.side]
        can_xy = rng.uniform([-0.10, 0.14], [0.10, 0.24]) * [1.0, sign]
        self.set_actor_pose(self.can, sapien.Pose([*can_xy, CAN_HALF_HEIGHT]))
        basket_xy = rng.uniform([-0.06, -0.08], [0.06, 0.0]) * [1.0, sign]
        self.set_actor_pose(self.basket, sapien.Pose([*basket_xy, BASKET_FLOOR_HALF],
                                                     yaw_quat(rng.uniform(-0.3, 0.3))))

    # --- geometry ----------------------------------------------------------------------------
    def _grasp_point(self) -> np.ndarray:
        return self.can.pose.p + [0.0, 0.0, CAN_HALF_HEIGHT - GRASP_BELOW_TOP]

    def _drop_point(self) -> np.ndarray:
        """Where the can's centre goes: above the middle of the basket floor."""
        return (self.basket.pose * sapien.Pose(
            [0.0, 0.0, BASKET_FLOOR_HALF + CAN_HALF_HEIGHT + DROP_HEIGHT])).p

    def evaluate(self) -> dict:
        can = self.can.pose.p
        local = in_frame(self.basket.pose, can)
        inside_xy = bool(np.all(np.abs(local[:2]) < BASKET_INNER_HALF))
        below_rim = bool(local[2] < BASKET_WALL_TOP - BASKET_FLOOR_HALF)
        grasped = bool(self.grasping_arms(self.can))
        released = not grasped and self.arms[nearest_arm(self, can)].is_open
        return {
            "success": inside_xy and below_rim and released,
            "can_inside_xy": inside_xy,
            "can_below_rim": below_rim,
            "can_grasped": grasped,
            "released": released,
            "can_height": float(can[2] - CAN_HALF_HEIGHT),
        }

    def compute_dense_reward(self, info: dict) -> float:
        """Staged reward in [0, 1]: reach, grasp, carry over the basket, lower, release."""
        if info["success"]:
            return 1.0
        return pick_and_place_reward(
            self, self.side, self.can, self._grasp_point(), self._drop_point(),
            placed=info["can_inside_xy"] and info["can_below_rim"], grasped=info["can_grasped"])

    # --- scripted expert ---------------------------------------------------------------------
    def expert(self):
        plan = MotionPlanner(self)
        # A can is round: close the fingers along x, the wrist's natural turn for both arms.
        yield from plan.pick(self.side, self._grasp_point(), closing_yaw=0.0)
        # Lower it upright into the basket (as high as the carry keeps it over the walls) and let
        # go just above the floor.
        yield from plan.place(self.side, self.can, self._drop_point(), goal_quat=[1, 0, 0, 0])
