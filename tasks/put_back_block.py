"""PutBackBlock: move a block to the centre, press the button, then put it back where it was.

After RMBench's ``put_back_block`` (spatial memory). Four identical grey mats lie at the corners
of a square around a white centre pad, and a red cube sits on one of them (uniform); a button
stands behind the pad. The robot carries the cube onto the centre pad, presses the button while
the cube rests there, then returns the cube to the mat it came from. Success: after such a press
(latched), the cube rests on its original mat (centre within 3 cm in x and y, bottom on the
table), both grippers open and nothing holds it. Setting the cube down, let go, on another mat
after the press fails and ends the episode.

Memory: once the cube has left its mat, the four mats look the same; the frame no longer shows
which one it came from, nor whether the button was pressed (the cap springs back). Chance: a
policy that guesses the mat uniformly (and does the rest right) succeeds 1/4 of the time.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import sapien

from aem_bench.registration import register_task
from aem_bench.sim.motion import MotionPlanner, arm_for
from aem_bench.sim.poses import yaw_quat
from aem_bench.sim.reward import closeness
from aem_bench.sim.tabletop import TableTopEnv
from aem_bench.tasks._articulations import FINGERTIP_BELOW_TCP

from ._memory_cues import one_hot
from ._memory_history import (
    BUTTON_TRAVEL,
    Button,
    arms_back,
    carry_cube,
    cube_resting_at,
    press_button,
)

CUBE_HALF = 0.025  # m, a 5 cm cube
MAT_HALF = (0.045, 0.045, 0.001)
MAT_CORNER = np.array([0.09, 0.14])  # the mats sit at (+-x, +-y) of the pad
MATS = [MAT_CORNER * sign for sign in ((1, 1), (-1, 1), (1, -1), (-1, -1))]
PAD_CENTRE = np.array([0.0, 0.0])
BUTTON_XY = np.array([0.19, 0.0])  # behind the pad, reached by either arm
JITTER = 0.015  # m: the whole layout shifts by up to this in x and y
ON_MAT = 0.03  # m: success, cube centre this close to the mat centre in x and in y
LEFT_MAT = 0.05  # m: the cube has left its mat once its centre moved this far from it
CUBE_COLOUR, MAT_COLOUR, PAD_COLOUR = (0.85, 0.1, 0.1), (0.35, 0.38, 0.45), (0.92, 0.92, 0.9)
BUTTON_COLOUR = (0.95, 0.75, 0.1)


@register_task("AEM/PutBackBlock-v0", max_episode_steps=320, arms=2,
               skills=("pick", "place", "press"), memory="spatial", chance=1 / len(MATS))
class PutBackBlockEnv(TableTopEnv):
    """Carry the cube to the centre pad, press the button, return the cube to its own mat."""

    memory_fact: ClassVar[str] = "Which of the four identical mats the cube started on."
    oracle_size: ClassVar[int] = len(MATS) + 2  # one-hot mat, pressed, cube has been centred
    fact_size: ClassVar[int] = len(MATS)  # the starting mat, one-hot

    def _load_scene(self) -> None:
        self.mats = [self.add_visual_box(f"mat_{k}", MAT_HALF, MAT_COLOUR)
                     for k in range(len(MATS))]
        self.pad = self.add_visual_box("centre_pad", MAT_HALF, PAD_COLOUR)
        self.cube = self.add_box("cube", [CUBE_HALF] * 3, CUBE_COLOUR)
        self.button = Button(self, "button", BUTTON_COLOUR)
        self.origin = 0
        self.cue_hidden_at: int | None = None
        self.decision_at: int | None = None
        self.was_centred = self.pressed = False

    def _initialize_episode(self, rng: np.random.Generator) -> None:
        shift = rng.uniform(-JITTER, JITTER, 2)
        for mat, xy in zip(self.mats, MATS):
            mat.set_pose(sapien.Pose([*(xy + shift), MAT_HALF[2]]))
        self.pad.set_pose(sapien.Pose([*(PAD_CENTRE + shift), MAT_HALF[2]]))
        self.button.reset(BUTTON_XY + shift)
        self.origin = int(rng.integers(len(MATS)))
        self.set_actor_pose(self.cube, sapien.Pose([*self._mat_xy(self.origin), CUBE_HALF],
                                                   yaw_quat(rng.uniform(-0.4, 0.4))))
        self.cue_hidden_at = None
        self.decision_at: int | None = None
        self.was_centred = self.pressed = False

    def hidden_fact(self) -> int:
        """The mat the cube started on."""
        return self.origin

    def _mat_xy(self, k: int) -> np.ndarray:
        return self.mats[k].pose.p[:2]

    def _on_pad(self) -> bool:
        return cube_resting_at(self.cube, CUBE_HALF, self.pad.pose.p[:2], ON_MAT)

    def _after_step(self) -> None:
        cube_xy = self.cube.pose.p[:2]
        if self.cue_hidden_at is None and (
                np.linalg.norm(cube_xy - self._mat_xy(self.origin)) > LEFT_MAT
                or self.cube.pose.p[2] > CUBE_HALF + LEFT_MAT):
            self.cue_hidden_at = self.elapsed_steps
        on_pad = self._on_pad()
        self.was_centred = self.was_centred or on_pad
        # Only a press while the cube waits on the pad counts.
        if self.button.update() and on_pad:
            self.pressed = True
        # The cube lifted off the pad after the press: from here the carry goes to its mat.
        if self.decision_at is None and self.pressed and (
                self.cube.pose.p[2] > CUBE_HALF + LEFT_MAT):
            self.decision_at = self.elapsed_steps

    def oracle(self) -> np.ndarray:
        return np.append(one_hot(self.origin, len(MATS)),
                         [float(self.pressed), float(self.was_centred)]).astype(np.float32)

    def _mat_under_cube(self) -> int | None:
        for k in range(len(MATS)):
            if cube_resting_at(self.cube, CUBE_HALF, self._mat_xy(k), ON_MAT):
                return k
        return None

    def evaluate(self) -> dict:
        mat = self._mat_under_cube()
        held = bool(self.grasping_arms(self.cube))
        let_go = not held and mat is not None
        grippers_open = all(arm.is_open for arm in self.arms.values())
        return {
            "success": self.pressed and let_go and mat == self.origin and grippers_open,
            "fail": self.pressed and let_go and mat != self.origin,
            "was_centred": self.was_centred,
            "pressed": self.pressed,
            "on_original_mat": mat == self.origin,
            "cube_grasped": held,
            "grippers_open": grippers_open,
        }

    def compute_dense_reward(self, info: dict) -> float:
        """Staged: cube to the pad (reach, grasp, carry), press, cube back (grasp, carry)."""
        if info["success"]:
            return 1.0
        if info["fail"]:
            return 0.0
        cube = self.cube.pose.p
        hand = max(closeness(arm.tcp_pose.p, cube) for arm in self.arms.values())
        if info["pressed"]:
            goal = np.append(self._mat_xy(self.origin), CUBE_HALF)
            if info["on_original_mat"] and not info["cube_grasped"]:
                stage = 7.0  # back in place: only the grippers are left to open
            elif info["cube_grasped"]:
                stage = 6.0 + closeness(cube, goal)
            else:
                stage = 5.0 + hand
        elif info["was_centred"] and self._on_pad():
            fingertips = [arm.tcp_pose.p - [0.0, 0.0, FINGERTIP_BELOW_TCP]
                          for arm in self.arms.values()]
            stage = 3.0 + max(closeness(tip, self.button.cap_top) for tip in fingertips)
            stage += self.button.depth / BUTTON_TRAVEL
        else:
            goal = np.append(self.pad.pose.p[:2], CUBE_HALF)
            stage = 1.0 + closeness(cube, goal) if info["cube_grasped"] else hand
        return float(stage / 8.0)

    def expert(self):
        plan = MotionPlanner(self)
        side = arm_for(self._mat_xy(self.origin)[1])
        presser = "right" if side == "left" else "left"
        home = self._mat_xy(self.origin).copy()
        yield from carry_cube(plan, side, self.cube, np.append(self.pad.pose.p[:2], CUBE_HALF))
        yield from press_button(plan, presser, self.button)
        yield from carry_cube(plan, side, self.cube, np.append(home, CUBE_HALF))


@register_task("AEM/PutBackBlock-v1", max_episode_steps=400, arms=2,
               skills=("pick", "place", "press"), memory="spatial", chance=1 / len(MATS),
               supersedes="AEM/PutBackBlock-v0")
class PutBackBlockV1Env(PutBackBlockEnv):
    """PutBackBlock where the arms return to their start before the cube is carried back.

    Description / Success: as ``AEM/PutBackBlock-v0``. The expert carries the cube to the pad with
    the arm on the mat's side, brings that arm back to its starting joints, presses the button
    with the right arm, brings it back too, waits, and only then carries the cube back.

    Why a new version: in v0's expert episodes the joint angles alone give the starting mat at
    the decision (a linear probe on them reads it in every episode), since the arms reach the
    same gripper poses with different elbows depending on where they came from. Here, at the
    decision step both arms are back at their starting joints, so neither the frame nor the joint
    state tells the mat: only a memory of what happened does.

    Decision step (``decision_at``): the first step after the press at which both arms are back
    at their start (every joint within ``_memory_history.ARMS_BACK``).
    """

    def _after_step(self) -> None:
        decided = self.decision_at
        super()._after_step()
        self.decision_at = decided  # v0's rule (the cube lifted again) does not apply here
        if self.decision_at is None and self.pressed and arms_back(self):
            self.decision_at = self.elapsed_steps

    def expert(self):
        plan = MotionPlanner(self)
        side = arm_for(self._mat_xy(self.origin)[1])
        home = self._mat_xy(self.origin).copy()
        yield from carry_cube(plan, side, self.cube, np.append(self.pad.pose.p[:2], CUBE_HALF))
        yield from plan.go_back(15, side)
        yield from press_button(plan, "right", self.button)
        yield from plan.go_back(15, "right")
        yield from plan.hold(12)  # the arms settle at their start: the decision step
        yield from carry_cube(plan, side, self.cube, np.append(home, CUBE_HALF))
