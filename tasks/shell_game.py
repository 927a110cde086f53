"""ShellGame: see under which of three spots the ball lies before identical cups cover them, then
lift the cup with the ball.

After MIKASA-Robo's ``ShellGame`` (memory of a place). Three spots in a row across the table are
marked by grey rings; a red ball lies on one of them for the first ``CUE_STEPS`` steps, then
three identical cups come down over the three spots, hiding the ball. Success: the cup over the
ball lifted, its bottom at least 5 cm above the table. Lifting another cup 2 cm or more ends the
episode as failed (MIKASA-Robo's ShellGame-Pick; its Touch and Push versions differ only in the
final motion).

Chance 1/3: a policy that guesses the ball's spot lifts the right cup once in three tries, and
a wrong lift is final. The ball is seen but not touched, so a lifted cup reveals it, as in the
real game; before that the cups (and rings) look alike.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import sapien

from aem_bench.registration import register_task

from ._memory_cues import (
    PALETTE,
    LiftTheRememberedEnv,
    Parking,
    one_hot,
    rest_on_table,
    row_slots,
)

NUM_SPOTS = 3
SPOT_SPACING = 0.13  # m between the spots, room for the open fingers beside a cup
ROW_JITTER = (0.03, 0.02)  # m, the row's random shift in x and y
CUP_RADIUS, CUP_HALF_HEIGHT = 0.03, 0.045  # 6 cm wide (the gripper opens 8 cm), 9 cm tall
CUP_COLOUR = (0.3, 0.45, 0.6)
BALL_RADIUS = 0.024  # inside a cup, all of it
RING_RADIUS, RING_HALF_HEIGHT = 0.04, 0.0005
RING_COLOUR = (0.75, 0.75, 0.75)
CUE_STEPS = 8  # the cups come down after this many steps


@register_task("AEM/ShellGame-v0", max_episode_steps=120, arms=1, skills=("pick", "lift"),
               memory="spatial", chance=1 / NUM_SPOTS)
class ShellGameEnv(LiftTheRememberedEnv):
    """Lift the cup that came down over the ball."""

    memory_fact: ClassVar[str] = "Which of the three spots the ball lay on before the cups fell."
    oracle_size: ClassVar[int] = NUM_SPOTS  # the ball's spot, one-hot (left to right)
    fact_size: ClassVar[int] = NUM_SPOTS  # the same: here the fact is where to go

    def _load_scene(self) -> None:
        self.rings = [self.add_cylinder(f"ring_{i}", RING_RADIUS, RING_HALF_HEIGHT, RING_COLOUR,
                                        visual_only=True) for i in range(NUM_SPOTS)]
        builder = self.scene.create_actor_builder()
        builder.add_sphere_visual(radius=BALL_RADIUS, material=PALETTE[0][1])
        self.ball = builder.build_kinematic(name="ball")
        self.track(self.ball, BALL_RADIUS)
        self.choices = [self.add_cylinder(f"cup_{i}", CUP_RADIUS, CUP_HALF_HEIGHT, CUP_COLOUR,
                                          density=300.0) for i in range(NUM_SPOTS)]
        self.choice_halves = [CUP_HALF_HEIGHT] * NUM_SPOTS
        self.parking = Parking(self)
        self.choosing_from = CUE_STEPS
        self.spots = row_slots(NUM_SPOTS, SPOT_SPACING)

    def _initialize_episode(self, rng: np.random.Generator) -> None:
        shift = rng.uniform(-1.0, 1.0, 2) * ROW_JITTER
        self.spots = [slot + shift for slot in row_slots(NUM_SPOTS, SPOT_SPACING)]
        self.answer = int(rng.integers(NUM_SPOTS))  # the ball's spot, the cup to lift
        for ring, spot in zip(self.rings, self.spots):
            ring.set_pose(sapien.Pose([*spot, RING_HALF_HEIGHT]))
        self.ball.set_pose(sapien.Pose([*self.spots[self.answer], BALL_RADIUS]))
        for cup in self.choices:
            self.parking.park(cup, CUP_HALF_HEIGHT)
        self.cue_hidden_at = None

    def keep_clear(self) -> list[tuple[np.ndarray, float]]:
        """Where the cups come down (they are parked at reset), with room for the fingers."""
        return [(spot, CUP_RADIUS + 0.02) for spot in self.spots]

    def _after_step(self) -> None:
        if self.elapsed_steps == CUE_STEPS:
            # The cups, alike, cover the three spots; the cup over the ball hides it whole.
            for cup, spot in zip(self.choices, self.spots):
                rest_on_table(self, cup, spot, CUP_HALF_HEIGHT)
            self.cue_hidden_at = self.elapsed_steps

    def oracle(self) -> np.ndarray:
        return one_hot(self.answer, NUM_SPOTS)
