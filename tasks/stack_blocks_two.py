"""StackBlocksTwo: stack the green cube on the red one.

After RoboTwin 2.0's ``stack_blocks_two``. Two 5 cm cubes, red and green, start at random
places and yaws on the table. Success (as RoboTwin): the green cube rests on the red one (centres
within 2.5 cm in xy, green 5 cm higher within 1 cm), both grippers open and neither cube held.

The expert uses the arm on the green cube's side. When the red cube lies out of that arm's reach
(on the far half), the red cube's own arm first brings it to the middle of the table, as
RoboTwin's expert builds its stacks at a central spot both arms reach.
"""

from __future__ import annotations

import numpy as np

from aem_bench.registration import register_task
from aem_bench.sim.tabletop import TableTopEnv

from ._blocks import (
    FINGER_REACH,
    CubeMover,
    arm_for,
    closing_yaw_near,
    place_cubes,
    reaches,
    resting_on,
    spawn_cubes,
    staged_cube_reward,
)

CUBE_HALF = 0.025  # m, a 5 cm cube
RED, GREEN = (0.85, 0.1, 0.1), (0.1, 0.7, 0.15)
# Cubes spawn off a middle strip (|y| < 8 cm) that stays free for a central stack.
SPAWN_LOW, SPAWN_HIGH = (-0.12, -0.28), (0.14, 0.28)
MIDDLE_STRIP = 0.08
STACK_SITE = np.array([0.0, 0.0])
SUCCESS_XY, SUCCESS_Z = 0.025, 0.01


@register_task("AEM/StackBlocksTwo-v0", max_episode_steps=400, arms=2,
               skills=("pick", "place", "stack"))
class StackBlocksTwoEnv(TableTopEnv):
    """Stack the green cube on the red cube."""

    def _load_scene(self) -> None:
        half = [CUBE_HALF] * 3
        self.red = self.add_box("red_cube", half, RED)
        self.green = self.add_box("green_cube", half, GREEN)

    def keep_clear(self) -> list[tuple[np.ndarray, float]]:
        """The central stack site, where the expert may move the red cube."""
        return [(STACK_SITE, FINGER_REACH)]

    def _initialize_episode(self, rng: np.random.Generator) -> None:
        centres = spawn_cubes(rng, [CUBE_HALF] * 2, SPAWN_LOW, SPAWN_HIGH,
                              allowed=lambda xy: abs(xy[1]) >= MIDDLE_STRIP)
        place_cubes(self, [self.red, self.green], [CUBE_HALF] * 2, centres, rng)

    def _goal(self) -> np.ndarray:
        """Where the green cube's centre rests on the red cube."""
        return self.red.pose.p + [0.0, 0.0, 2 * CUBE_HALF]

    def evaluate(self) -> dict:
        red, green = self.red.pose.p, self.green.pose.p
        on_red_xy = bool(np.linalg.norm(green[:2] - red[:2]) < SUCCESS_XY)
        on_red_z = resting_on(green, CUBE_HALF, red[2] + CUBE_HALF, SUCCESS_Z)
        grippers_open = all(arm.is_open for arm in self.arms.values())
        held = bool(self.grasping_arms(self.red) | self.grasping_arms(self.green))
        return {
            "success": on_red_xy and on_red_z and grippers_open and not held,
            "green_on_red_xy": on_red_xy,
            "green_on_red_z": on_red_z,
            "grippers_open": grippers_open,
            "cube_grasped": held,
            "green_offset_xy": float(np.linalg.norm(green[:2] - red[:2])),
        }

    def compute_dense_reward(self, info: dict) -> float:
        """Staged: reach the green cube, grasp it, carry it above the red one, let go."""
        return staged_cube_reward(self, [(self.green, self._goal())], info["success"])

    def expert(self):
        mover = CubeMover(self)
        green_arm = arm_for(self.green.pose.p[1])
        if not reaches(green_arm, self.red.pose.p[1]):
            yield from mover.move_cube(self.red, [*STACK_SITE, CUBE_HALF])
        yield from mover.move_cube(self.green, self._goal(),
                                   final_closing_yaw=closing_yaw_near(self.red, 0.0),
                                   side=green_arm)
