"""PressButtonCount: a display shows n dots for a moment; press a button n times, then "done".

After RMBench's ``press_button`` (a capacity-memory task: the robot must keep a count). A board
behind the table shows n white dots (n from 1 to 5, uniform) for the first ``CUE_STEPS`` steps,
then the dots vanish. A yellow button stands on the right half, a green "done" button on the
left half. A press counts when the cap goes down past 60% of its 1 cm travel and comes back up
past 30%. Success: the done button is pressed after exactly n presses of the yellow one. Pressing
done with any other count fails and ends the episode, so pressing on until done "works" is no
strategy.

Memory: after the dots vanish, neither n nor the number of presses so far is in the frame (the
cap springs back). Chance: a policy that guesses n uniformly (and counts right) succeeds 1/5 of
the time.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import sapien

from aem_bench.registration import register_task
from aem_bench.sim.motion import MotionPlanner
from aem_bench.sim.reward import closeness
from aem_bench.sim.tabletop import TableTopEnv
from aem_bench.tasks._articulations import FINGERTIP_BELOW_TCP

from ._memory_cues import hide, one_hot
from ._memory_history import Button, press_button

MAX_COUNT = 5
CUE_STEPS = 8  # the dots are seen for this many steps, then hidden
# The display: an upright dark board across the far side of the table, dots on its front face.
BOARD_CENTRE = np.array([0.24, 0.0, 0.09])
BOARD_HALF = (0.005, 0.15, 0.05)
DOT_HALF = (0.002, 0.016, 0.016)
DOT_SPACING = 0.055  # m between dot centres along y; dot k is k-th from the left
COUNT_COLOUR, DONE_COLOUR = (0.95, 0.75, 0.1), (0.1, 0.7, 0.2)
BUTTON_X = (-0.06, 0.04)
BUTTON_ABS_Y = (0.10, 0.18)  # count button on the right half (-y), done on the left (+y)


@register_task("AEM/PressButtonCount-v0", max_episode_steps=260, arms=2,
               skills=("press", "count"), memory="capacity", chance=1 / MAX_COUNT)
class PressButtonCountEnv(TableTopEnv):
    """Press the yellow button as many times as dots were shown, then the green one."""

    memory_fact: ClassVar[str] = "How many dots the display showed, and how many presses are done."
    # The count presses still to make, one-hot over 0..MAX_COUNT (0: press done now); all zeros
    # once there were more presses than dots (a failed state).
    oracle_size: ClassVar[int] = MAX_COUNT + 1
    fact_size: ClassVar[int] = MAX_COUNT  # the number of dots shown, one-hot over 1..MAX_COUNT

    def _load_scene(self) -> None:
        self.board = self.add_box("display", BOARD_HALF, (0.12, 0.12, 0.14), visual_only=True,
                                  pose=sapien.Pose(BOARD_CENTRE))
        # The board's footprint covers the dots; they are not task objects themselves (the state
        # observation would give n away).
        self.dots = [self.add_box(f"dot_{k}", DOT_HALF, (0.97, 0.97, 0.97), visual_only=True,
                                  task_object=False) for k in range(MAX_COUNT)]
        self.count_button = Button(self, "count_button", COUNT_COLOUR)
        self.done_button = Button(self, "done_button", DONE_COLOUR)
        self.target = 1
        self.cue_hidden_at: int | None = None
        self.decision_at: int | None = None
        self.done_pressed = False

    def _dot_position(self, k: int) -> np.ndarray:
        first_y = DOT_SPACING * (MAX_COUNT - 1) / 2
        return BOARD_CENTRE + [-BOARD_HALF[0] - DOT_HALF[0], first_y - k * DOT_SPACING, 0.0]

    def _initialize_episode(self, rng: np.random.Generator) -> None:
        self.target = int(rng.integers(1, MAX_COUNT + 1))
        for k, dot in enumerate(self.dots):
            dot.set_pose(sapien.Pose(self._dot_position(k)))
            if k >= self.target:
                hide(dot)
        self.count_button.reset([rng.uniform(*BUTTON_X), -rng.uniform(*BUTTON_ABS_Y)])
        self.done_button.reset([rng.uniform(*BUTTON_X), rng.uniform(*BUTTON_ABS_Y)])
        self.cue_hidden_at = None
        self.decision_at: int | None = None
        self.done_pressed = False

    def hidden_fact(self) -> int:
        """The number of dots shown, minus one (n in 1..5 as 0..4)."""
        return self.target - 1

    def _after_step(self) -> None:
        if self.elapsed_steps == CUE_STEPS:
            for dot in self.dots:
                hide(dot)
            self.cue_hidden_at = self.elapsed_steps
        if self.done_pressed:
            return  # the episode is decided; later presses change nothing
        # After the first press the count decides: press again, or go to the done button.
        if self.count_button.update() and self.decision_at is None:
            self.decision_at = self.elapsed_steps
        if self.done_button.update():
            self.done_pressed = True

    def oracle(self) -> np.ndarray:
        left = self.target - self.count_button.presses
        if left < 0:
            return np.zeros(MAX_COUNT + 1, dtype=np.float32)
        return one_hot(left, MAX_COUNT + 1)

    def evaluate(self) -> dict:
        presses = self.count_button.presses
        right_count = presses == self.target
        return {
            "success": self.done_pressed and right_count,
            "fail": self.done_pressed and not right_count,
            "presses": presses,
            "done_pressed": self.done_pressed,
            "count_reached": presses >= self.target,
        }

    def compute_dense_reward(self, info: dict) -> float:
        """Staged: one stage per press (reach the yellow cap, press), then reach and press done;
        presses past n take stages away."""
        if info["success"]:
            return 1.0
        presses, n = info["presses"], self.target
        if info["fail"] or presses > n:
            return float(max(0, 2 * n - presses) / (n + 1) / 2)
        if presses < n:
            arm, button = self.arms["right"], self.count_button
        else:
            arm, button = self.arms["left"], self.done_button
        fingertips = arm.tcp_pose.p - [0.0, 0.0, FINGERTIP_BELOW_TCP]
        reach = closeness(fingertips, button.cap_top)
        return float((presses + 0.5 * reach) / (n + 1))

    def expert(self):
        plan = MotionPlanner(self)
        yield from press_button(plan, "right", self.count_button, times=self.target)
        yield from press_button(plan, "left", self.done_button)
