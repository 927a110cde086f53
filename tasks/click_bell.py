"""ClickBell: press the cap of a desk bell with the closed gripper, then lift the hand away.

After RoboTwin 2.0's ``click_bell``. The bell is an articulation built in code: a fixed base
cylinder and a cap on a prismatic joint along z, held up by a spring drive, with 1 cm of travel.
It stands at a random spot on the left or right half of the table; the arm on that side
presses it. Success (RoboTwin: the bell was clicked): at some step the cap went down by at
least 60% of its travel, and now it is back up (under 30%) with every hand clear of it
(fingertips 2 cm above the cap's top, or 6 cm away from its axis).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import sapien

from aem_bench.registration import register_task
from aem_bench.sim.motion import MotionPlanner
from aem_bench.sim.panda import ARM_DOF, GRIPPER_CLOSED, GRIPPER_OPEN
from aem_bench.sim.reward import closeness
from aem_bench.sim.tabletop import TableTopEnv
from aem_bench.tasks._articulations import (
    FINGERTIP_BELOW_TCP,
    X_TO_DOWN,
    add_prismatic_link,
    reset_articulation,
)

BASE_RADIUS, BASE_HALF_HEIGHT = 0.045, 0.02
CAP_RADIUS, CAP_HALF_HEIGHT = 0.028, 0.008
TRAVEL = 0.01  # m the cap can be pushed down
SPRING_STIFFNESS, SPRING_DAMPING = 300.0, 5.0  # N/m, N s/m
SPRING_PRELOAD = 0.004  # m: the spring aims above the upper stop, so the cap rests against it
PRESSED_FRACTION, RELEASED_FRACTION = 0.6, 0.3  # of TRAVEL
CLEAR_HEIGHT, CLEAR_RADIUS = 0.02, 0.06  # m: a hand this high above the cap, or this far away
BELL_X = (-0.10, 0.10)
BELL_ABS_Y = (0.10, 0.25)  # on the side's half, mirrored for the right arm
HOVER = 0.08
PRESS_DEPTH = TRAVEL + 0.004  # the fingertips aim below the stop: the stop, not the arm, ends it
UPRIGHT = X_TO_DOWN
CAP_REST_Z = 2 * BASE_HALF_HEIGHT + TRAVEL + CAP_HALF_HEIGHT  # cap centre over the base origin


@register_task("AEM/ClickBell-v0", max_episode_steps=100, arms=1, skills=("press",))
class ClickBellEnv(TableTopEnv):
    """Press the bell's cap with the closed gripper and lift the hand away."""

    def _load_scene(self) -> None:
        builder = self.scene.create_articulation_builder()
        base = builder.create_link_builder()
        # SAPIEN's cylinders lie along x; a rotation from x onto -z stands them upright.
        base.set_name("bell_base")
        base.add_cylinder_collision(sapien.Pose([0, 0, BASE_HALF_HEIGHT], UPRIGHT), BASE_RADIUS,
                                    BASE_HALF_HEIGHT)
        base.add_cylinder_visual(sapien.Pose([0, 0, BASE_HALF_HEIGHT], UPRIGHT), BASE_RADIUS,
                                 BASE_HALF_HEIGHT, material=(0.2, 0.22, 0.25))
        # The joint axis points down, so qpos is how far the cap is pressed: 0 up, TRAVEL down.
        cap = add_prismatic_link(builder, base, "bell_cap", X_TO_DOWN, (0.0, TRAVEL))
        cap_centre = sapien.Pose([0, 0, CAP_REST_Z], UPRIGHT)
        cap.add_cylinder_collision(cap_centre, CAP_RADIUS, CAP_HALF_HEIGHT, density=300.0)
        cap.add_cylinder_visual(cap_centre, CAP_RADIUS, CAP_HALF_HEIGHT,
                                material=(0.95, 0.75, 0.1))
        # A stem (seen, not touched) so the cap does not look as if it floats over the base.
        stem_half = (TRAVEL + 0.004) / 2
        cap.add_cylinder_visual(sapien.Pose([0, 0, CAP_REST_Z - CAP_HALF_HEIGHT - stem_half],
                                            UPRIGHT), 0.008, stem_half,
                                material=(0.7, 0.7, 0.72))
        self.bell = builder.build(fix_root_link=True)
        self.bell.set_name("bell")
        self.base_link, self.cap_link = self.bell.links
        spring = self.bell.active_joints[0]
        spring.set_drive_properties(SPRING_STIFFNESS, SPRING_DAMPING)
        spring.set_drive_target(-SPRING_PRELOAD)
        # Articulation links are not tracked by the base class: declare them for clutter and
        # the state observation (the cap's pose tells how far it is pressed).
        self.track(self.base_link.entity, BASE_RADIUS)
        self.track(self.cap_link.entity, CAP_RADIUS)
        self.was_pressed = False

    # The layout's randomisation (a new version of the task widens it). The bell is round, so
    # turning it would change nothing a camera or the arm meets: its place is all there is.
    bell_x: ClassVar[tuple[float, float]] = BELL_X
    bell_abs_y: ClassVar[tuple[float, float]] = BELL_ABS_Y

    def _initialize_episode(self, rng: np.random.Generator) -> None:
        self.side = "left" if rng.uniform() < 0.5 else "right"
        sign = 1.0 if self.side == "left" else -1.0
        x = rng.uniform(*self.bell_x)
        y = sign * rng.uniform(*self.bell_abs_y)
        reset_articulation(self.bell, sapien.Pose([x, y, 0.0]), [0.0])
        self.was_pressed = False

    # --- geometry ----------------------------------------------------------------------------
    @property
    def press_depth(self) -> float:
        return float(self.bell.get_qpos()[0])

    @property
    def _cap_top_at_rest(self) -> np.ndarray:
        return self.base_link.entity_pose.p + [0.0, 0.0, CAP_REST_Z + CAP_HALF_HEIGHT]

    def _hand_clear(self, arm) -> bool:
        top = self._cap_top_at_rest
        fingertips = arm.tcp_pose.p - [0.0, 0.0, FINGERTIP_BELOW_TCP]
        return bool(fingertips[2] >= top[2] + CLEAR_HEIGHT
                    or np.linalg.norm(fingertips[:2] - top[:2]) >= CLEAR_RADIUS)

    def evaluate(self) -> dict:
        depth = self.press_depth
        # Latched: the click happened once; the episode goes on until the hand has left.
        self.was_pressed = self.was_pressed or depth >= PRESSED_FRACTION * TRAVEL
        released = depth < RELEASED_FRACTION * TRAVEL
        hands_clear = all(self._hand_clear(arm) for arm in self.arms.values())
        return {
            "success": self.was_pressed and released and hands_clear,
            "was_pressed": self.was_pressed,
            "cap_released": bool(released),
            "hands_clear": hands_clear,
            "press_depth": depth,
        }

    def compute_dense_reward(self, info: dict) -> float:
        """Staged reward in [0, 1]: reach above the cap with a closed hand, press, lift away."""
        if info["success"]:
            return 1.0
        arm = self.arms[self.side]
        top = self._cap_top_at_rest
        fingertips = arm.tcp_pose.p - [0.0, 0.0, FINGERTIP_BELOW_TCP]
        if info["was_pressed"]:
            stage = 3.0 + min(1.0, max(0.0, (fingertips[2] - top[2]) / CLEAR_HEIGHT))
        else:
            closed = 1.0 - arm.qpos[ARM_DOF] / GRIPPER_OPEN
            reach = closeness(fingertips, top)
            stage = reach + 0.5 * closed + 1.5 * reach * info["press_depth"] / TRAVEL
        return float(stage / 4.0)

    # --- scripted expert ---------------------------------------------------------------------
    def expert(self):
        plan = MotionPlanner(self)
        side = self.side
        top = self._cap_top_at_rest
        touch = top + [0.0, 0.0, FINGERTIP_BELOW_TCP]  # TCP where the fingertips meet the cap
        quat = plan.top_down(side, touch, 0.0).q
        yield from plan.move(25, grippers={side: GRIPPER_CLOSED},
                             **{side: sapien.Pose(touch + [0.0, 0.0, HOVER], quat)})
        yield from plan.move(12, **{side: sapien.Pose(touch + [0.0, 0.0, 0.01], quat)})
        yield from plan.move(10, **{side: sapien.Pose(touch - [0.0, 0.0, PRESS_DEPTH], quat)})
        yield from plan.hold(3)
        yield from plan.move(15, **{side: sapien.Pose(touch + [0.0, 0.0, HOVER], quat)})



# v1: the bell anywhere over most of the arm's reachable half of the table. The expert reaches
# |y| up to 0.32 m at every x in +-0.3 m (at 0.34 m the bell is too near the arm's base for a
# top-down press), so 0.30 leaves a margin.
BELL_X_V1 = (-0.25, 0.25)
BELL_ABS_Y_V1 = (0.04, 0.30)


@register_task("AEM/ClickBell-v1", max_episode_steps=100, arms=1, skills=("press",),
               supersedes="AEM/ClickBell-v0")
class ClickBellV1Env(ClickBellEnv):
    """ClickBell with the bell's place randomised widely enough to need eyes.

    Description / Success: as ``AEM/ClickBell-v0``.

    Randomizations: the bell's x in ``BELL_X_V1`` and its distance from the table's middle line
    in ``BELL_ABS_Y_V1``, on the left or the right half (v0: x +-10 cm, 10 to 25 cm).

    Why a new version: a blind press lands within about 4 cm of where the expert pressed, and
    v0's bell stands in a 20 by 15 cm patch per side, so the expert's actions of one seed,
    replayed open-loop on another, ring it 12% of the time (6/50, ``aem-bench tasks
    --measure-blind --pairs 50``): a policy could succeed without looking.
    """

    bell_x = BELL_X_V1
    bell_abs_y = BELL_ABS_Y_V1
