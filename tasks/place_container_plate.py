"""PlaceContainerPlate: pick a cup and set it down upright on a plate.

After RoboTwin 2.0's ``place_container_plate``. A green cup stands on one half of the table; a
white plate lies nearer the middle. The arm on the cup's side picks the cup and sets it on the
plate. Success (as RoboTwin): the cup upright (its axis within 15 degrees of vertical), its
centre within the plate's radius less the cup's radius of the plate centre in x and y (the whole
cup base on the plate), resting on the plate (its bottom within 1 cm of the plate top), no hand
holding it, and the nearest gripper open.
"""

from __future__ import annotations

import numpy as np
import sapien

from aem_bench.registration import register_task
from aem_bench.sim.motion import MotionPlanner
from aem_bench.sim.tabletop import TableTopEnv

from ._containers import SIDE_SIGN, Part, build_composite, nearest_arm, pick_and_place_reward, tilt

CUP_RADIUS, CUP_HALF_HEIGHT = 0.03, 0.04  # m: 6 cm wide (the open gripper spans 8 cm), 8 cm tall
GRASP_BELOW_TOP = 0.02  # grasp the cup this far below its rim
PLATE_RADIUS, PLATE_HALF_HEIGHT = 0.09, 0.005
SUCCESS_TILT = np.deg2rad(15.0)
SUCCESS_Z = 0.01  # the cup's bottom at most this far from the plate top
SET_DOWN_HEIGHT = 0.005  # the cup is let go this far above the plate


def _cup_parts() -> list[Part]:
    """A solid cylinder with a dark disc on top that reads as the cup's opening."""
    return [
        Part("cylinder", (CUP_RADIUS, CUP_HALF_HEIGHT), (0.0, 0.0, 0.0), (0.15, 0.65, 0.25)),
        Part("cylinder", (CUP_RADIUS - 0.005, 0.0005), (0.0, 0.0, CUP_HALF_HEIGHT),
             (0.05, 0.2, 0.08), solid=False),
    ]


@register_task("AEM/PlaceContainerPlate-v0", max_episode_steps=240, arms=1,
               skills=("pick", "place"))
class PlaceContainerPlateEnv(TableTopEnv):
    """Pick a cup and set it upright on the plate."""

    def _load_scene(self) -> None:
        self.cup = build_composite(self, "cup", _cup_parts(), radius=CUP_RADIUS)
        self.plate = self.add_cylinder("plate", PLATE_RADIUS, PLATE_HALF_HEIGHT,
                                       (0.92, 0.92, 0.88))
        self.side = "left"

    def _initialize_episode(self, rng: np.random.Generator) -> None:
        # The cup on one half; the plate between it and the middle, so one arm reaches both.
        self.side = ("left", "right")[int(rng.integers(2))]
        sign = SIDE_SIGN[self.side]
        cup_xy = rng.uniform([-0.10, 0.15], [0.10, 0.24]) * [1.0, sign]
        self.set_actor_pose(self.cup, sapien.Pose([*cup_xy, CUP_HALF_HEIGHT]))
        plate_xy = rng.uniform([-0.06, -0.10], [0.06, -0.02]) * [1.0, sign]
        self.set_actor_pose(self.plate, sapien.Pose([*plate_xy, PLATE_HALF_HEIGHT]))

    # --- geometry ----------------------------------------------------------------------------
    def _grasp_point(self) -> np.ndarray:
        return self.cup.pose.p + [0.0, 0.0, CUP_HALF_HEIGHT - GRASP_BELOW_TOP]

    def _set_down_point(self) -> np.ndarray:
        """Where the cup's centre goes: above the middle of the plate."""
        return self.plate.pose.p + [0.0, 0.0, PLATE_HALF_HEIGHT + CUP_HALF_HEIGHT
                                    + SET_DOWN_HEIGHT]

    def evaluate(self) -> dict:
        cup, plate = self.cup.pose.p, self.plate.pose.p
        upright = tilt(self.cup.pose) < SUCCESS_TILT
        on_plate_xy = bool(np.linalg.norm(cup[:2] - plate[:2]) < PLATE_RADIUS - CUP_RADIUS)
        bottom_gap = cup[2] - CUP_HALF_HEIGHT - (plate[2] + PLATE_HALF_HEIGHT)
        resting = bool(abs(bottom_gap) < SUCCESS_Z)
        grasped = bool(self.grasping_arms(self.cup))
        released = not grasped and self.arms[nearest_arm(self, cup)].is_open
        return {
            "success": upright and on_plate_xy and resting and released,
            "cup_upright": upright,
            "cup_on_plate_xy": on_plate_xy,
            "cup_resting": resting,
            "cup_grasped": grasped,
            "released": released,
            "cup_height": float(cup[2] - CUP_HALF_HEIGHT),
        }

    def compute_dense_reward(self, info: dict) -> float:
        """Staged reward in [0, 1]: reach, grasp, carry over the plate, set down, release."""
        if info["success"]:
            return 1.0
        return pick_and_place_reward(
            self, self.side, self.cup, self._grasp_point(), self._set_down_point(),
            placed=info["cup_on_plate_xy"] and info["cup_resting"] and info["cup_upright"],
            grasped=info["cup_grasped"])

    # --- scripted expert ---------------------------------------------------------------------
    def expert(self):
        plan = MotionPlanner(self)
        # A cup is round: close the fingers along x, the wrist's natural turn for both arms.
        yield from plan.pick(self.side, self._grasp_point(), closing_yaw=0.0)
        yield from plan.place(self.side, self.cup, self._set_down_point(), goal_quat=[1, 0, 0, 0])
