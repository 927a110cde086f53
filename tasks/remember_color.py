"""RememberColor: remember the colour of a cube shown at the start, then lift the cube of that
colour from among 3, 5 or 9.

After MIKASA-Robo's ``RememberColor{3,5,9}`` (memory of an object's colour). A cube stands on
the display spot for the first ``CUE_STEPS`` steps and is then taken away; ``APPEAR_STEP`` steps
into the episode ``num_choices`` cubes of distinct colours (one of them the shown colour, the
others drawn from a palette of nine) appear at fixed places in a row or a 3 x 3 grid, colours
shuffled over the places. Success: the cube of the shown colour lifted, its bottom at least 5 cm
above the table. Lifting another cube 2 cm or more ends the episode as failed. MIKASA-Robo asks
for a touch; a lift is a geometric check that a brush in passing cannot trigger.

Chance ``1 / num_choices``: a policy that guesses the colour lifts the right cube once in
``num_choices`` tries, and a wrong lift is final.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import sapien

from aem_bench.registration import register_task

from ._memory_cues import (
    DISPLAY_XY,
    PALETTE,
    LiftTheRememberedEnv,
    Parking,
    add_display_pad,
    grid_slots,
    hide,
    one_hot,
    paint,
    rest_on_table,
)

CUBE_HALF = 0.025  # m: 5 cm cubes to choose from
SHOWN_HALF = 0.03  # m: the shown cube is a little larger, to be read from the far side
SLOT_SPACING = (0.11, 0.12)  # m between neighbouring places in x and in y
SLOTS_X = -0.02  # m: the middle of the choices' places along x
DISPLAY_JITTER = (0.02, 0.05)  # m, the display spot's random shift in x and y
CUE_STEPS = 8  # the shown cube is taken away after this many steps ...
APPEAR_STEP = 12  # ... and the choices appear this many steps into the episode (MIKASA: a gap)


class RememberColorEnv(LiftTheRememberedEnv):
    """Lift the cube whose colour matches the cube shown at the start."""

    num_choices: ClassVar[int] = 3
    memory_fact: ClassVar[str] = "The colour of the cube shown on the display spot."
    # The place of the cube of the shown colour, one-hot over the ``num_choices`` places in the
    # order ``slots()`` lists them: what to lift, not the colour (set again in each subclass).
    oracle_size: ClassVar[int] = num_choices
    fact_size: ClassVar[int] = len(PALETTE)  # the shown colour, one-hot over the palette

    def _load_scene(self) -> None:
        self.display_pad = add_display_pad(self)
        self.shown = self.add_box("shown_cube", [SHOWN_HALF] * 3, (0.5, 0.5, 0.5),
                                  visual_only=True)
        self.choices = [self.add_box(f"cube_{i}", [CUBE_HALF] * 3, (0.5, 0.5, 0.5))
                        for i in range(self.num_choices)]
        self.choice_halves = [CUBE_HALF] * self.num_choices
        self.parking = Parking(self)
        self.choosing_from = APPEAR_STEP

    def slots(self) -> list[np.ndarray]:
        return [slot + [SLOTS_X, 0.0] for slot in grid_slots(self.num_choices, SLOT_SPACING)]

    def keep_clear(self) -> list[tuple[np.ndarray, float]]:
        """Where the cubes will appear: clutter stays off (the cubes are parked at reset)."""
        return [(slot, CUBE_HALF * np.sqrt(2.0) + 0.02) for slot in self.slots()]

    def _initialize_episode(self, rng: np.random.Generator) -> None:
        self.colours = rng.choice(len(PALETTE), self.num_choices, replace=False)
        self.answer = int(rng.integers(self.num_choices))  # the slot of the shown colour
        for cube, colour in zip(self.choices, self.colours):
            paint(cube, PALETTE[colour][1])
            self.parking.park(cube, CUBE_HALF)
        paint(self.shown, PALETTE[self.colours[self.answer]][1])
        display = DISPLAY_XY + rng.uniform(-1.0, 1.0, 2) * DISPLAY_JITTER
        self.display_pad.set_pose(sapien.Pose([*display, 0.001]))
        self.shown.set_pose(sapien.Pose([*display, 0.002 + SHOWN_HALF]))
        self.cue_hidden_at = None

    def _after_step(self) -> None:
        if self.elapsed_steps == CUE_STEPS:
            hide(self.shown)
            self.cue_hidden_at = self.elapsed_steps
        if self.elapsed_steps == APPEAR_STEP:
            for cube, slot in zip(self.choices, self.slots()):
                rest_on_table(self, cube, slot, CUBE_HALF)

    def hidden_fact(self) -> int:
        """The shown colour (its palette index), not the slot of the matching cube."""
        return int(self.colours[self.answer])

    def oracle(self) -> np.ndarray:
        return one_hot(self.answer, self.num_choices)


# One task, three sizes of choice (MIKASA-Robo's RememberColor3/5/9-v0).
@register_task("AEM/RememberColor3-v0", max_episode_steps=130, arms=1, skills=("pick", "lift"),
               memory="object", chance=1 / 3)
class RememberColor3Env(RememberColorEnv):
    """Lift the cube of the colour shown at the start, from among three."""

    num_choices = 3
    oracle_size = 3  # one-hot place of the answer


@register_task("AEM/RememberColor5-v0", max_episode_steps=130, arms=1, skills=("pick", "lift"),
               memory="object", chance=1 / 5)
class RememberColor5Env(RememberColorEnv):
    """Lift the cube of the colour shown at the start, from among five."""

    num_choices = 5
    oracle_size = 5  # one-hot place of the answer


@register_task("AEM/RememberColor9-v0", max_episode_steps=130, arms=1, skills=("pick", "lift"),
               memory="object", chance=1 / 9)
class RememberColor9Env(RememberColorEnv):
    """Lift the cube of the colour shown at the start, from among nine."""

    num_choices = 9
    oracle_size = 9  # one-hot place of the answer
