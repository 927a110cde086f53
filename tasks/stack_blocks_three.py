"""StackBlocksThree: stack the green cube on the red one, then the blue cube on the green one.

After RoboTwin 2.0's ``stack_blocks_three``. Three 5 cm cubes, red, green and blue, start at
random places and yaws on the table. Success (as RoboTwin): green rests on red and blue on green
(each centre within 2.5 cm in xy of the one below, one cube height higher within 1 cm), both
grippers open and no cube held.

Each cube is carried by the arm on its side. When the red cube lies out of reach of the green or
the blue cube's arm, the red cube's own arm first brings it to the middle of the table, where
both arms reach (RoboTwin's expert builds its stacks at such a central spot).
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
RED, GREEN, BLUE = (0.85, 0.1, 0.1), (0.1, 0.7, 0.15), (0.1, 0.25, 0.9)
# Cubes spawn off a middle strip (|y| < 8 cm) that stays free for a central stack.
SPAWN_LOW, SPAWN_HIGH = (-0.12, -0.28), (0.14, 0.28)
MIDDLE_STRIP = 0.08
STACK_SITE = np.array([0.0, 0.0])
SUCCESS_XY, SUCCESS_Z = 0.025, 0.01


def _on_top(upper: np.ndarray, lower: np.ndarray) -> bool:
    """Whether a cube centred at ``upper`` rests on the one centred at ``lower``."""
    return bool(np.linalg.norm(upper[:2] - lower[:2]) < SUCCESS_XY
                and resting_on(upper, CUBE_HALF, lower[2] + CUBE_HALF, SUCCESS_Z))


@register_task("AEM/StackBlocksThree-v0", max_episode_steps=600, arms=2,
               skills=("pick", "place", "stack"))
class StackBlocksThreeEnv(TableTopEnv):
    """Stack green on red, then blue on green."""

    def _load_scene(self) -> None:
        half = [CUBE_HALF] * 3
        self.red = self.add_box("red_cube", half, RED)
        self.green = self.add_box("green_cube", half, GREEN)
        self.blue = self.add_box("blue_cube", half, BLUE)

    def keep_clear(self) -> list[tuple[np.ndarray, float]]:
        """The central stack site, where the expert may move the red cube."""
        return [(STACK_SITE, FINGER_REACH)]

    def _initialize_episode(self, rng: np.random.Generator) -> None:
        centres = spawn_cubes(rng, [CUBE_HALF] * 3, SPAWN_LOW, SPAWN_HIGH,
                              allowed=lambda xy: abs(xy[1]) >= MIDDLE_STRIP)
        place_cubes(self, [self.red, self.green, self.blue], [CUBE_HALF] * 3, centres, rng)

    @staticmethod
    def _above(cube) -> np.ndarray:
        """Where a cube's centre rests on top of ``cube``."""
        return cube.pose.p + [0.0, 0.0, 2 * CUBE_HALF]

    def evaluate(self) -> dict:
        red, green, blue = self.red.pose.p, self.green.pose.p, self.blue.pose.p
        green_on_red, blue_on_green = _on_top(green, red), _on_top(blue, green)
        grippers_open = all(arm.is_open for arm in self.arms.values())
        held = bool(set().union(*(self.grasping_arms(cube)
                                  for cube in (self.red, self.green, self.blue))))
        return {
            "success": green_on_red and blue_on_green and grippers_open and not held,
            "green_on_red": green_on_red,
            "blue_on_green": blue_on_green,
            "grippers_open": grippers_open,
            "cube_grasped": held,
        }

    def compute_dense_reward(self, info: dict) -> float:
        """Staged: reach, grasp and carry green onto red, then blue onto green; let go."""
        moves = [(self.green, self._above(self.red)), (self.blue, self._above(self.green))]
        return staged_cube_reward(self, moves, info["success"])

    def expert(self):
        mover = CubeMover(self)
        green_arm, blue_arm = arm_for(self.green.pose.p[1]), arm_for(self.blue.pose.p[1])
        red_y = self.red.pose.p[1]
        if not (reaches(green_arm, red_y) and reaches(blue_arm, red_y)):
            yield from mover.move_cube(self.red, [*STACK_SITE, CUBE_HALF])
        yield from mover.move_cube(self.green, self._above(self.red),
                                   final_closing_yaw=closing_yaw_near(self.red, 0.0),
                                   side=green_arm)
        yield from mover.move_cube(self.blue, self._above(self.green),
                                   final_closing_yaw=closing_yaw_near(self.green, 0.0),
                                   side=blue_arm)
