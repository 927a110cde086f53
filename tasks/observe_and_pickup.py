"""ObserveAndPickup: see which object is shown on the display spot, then pick up its twin.

After RMBench's ``observe_and_pickup`` (memory of an object). Five objects of five shapes (cube,
cylinder, bar, puck, tower) and five colours, shuffled, stand in a row across the table. For
the first ``CUE_STEPS`` steps a copy of one of them stands on a mat on the display spot at the
far side of the table; then the copy is taken away and only the empty mat is left. Success: the
matching object lifted, its bottom at least 5 cm above the table. Lifting any other object 2 cm
or more ends the episode as failed.

Chance 1/5: a policy that does everything right but guesses which of the five objects was
shown picks the right one one time in five, and a wrong lift is final.
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
    add_display_pad,
    hide,
    one_hot,
    paint,
    rest_on_table,
    row_slots,
)

# name, kind, size: a box's half size (x, y, z) or a cylinder's (radius, half height). The
# fingers close along x: every shape is at most 6.4 cm across that way.
SHAPES = (
    ("cube", "box", (0.022, 0.022, 0.022)),
    ("cylinder", "cylinder", (0.022, 0.035)),
    ("bar", "box", (0.018, 0.045, 0.018)),
    ("puck", "cylinder", (0.032, 0.02)),
    ("tower", "box", (0.018, 0.018, 0.04)),
)
COLOURS = PALETTE[:5]  # red, green, blue, yellow, magenta
ROW_X = -0.02  # m: the row across the table
ROW_SPACING = 0.12  # m between neighbouring centres, room for the open fingers
MAX_YAW = 0.4  # rad of random turn per object
DISPLAY_JITTER = (0.02, 0.05)  # m, the display spot's random shift in x and y
CUE_STEPS = 8  # the shown copy is taken away after this many steps


def half_height(kind: str, size) -> float:
    return size[2] if kind == "box" else size[1]


@register_task("AEM/ObserveAndPickup-v0", max_episode_steps=120, arms=1,
               skills=("pick", "lift"), memory="object", chance=1 / 5)
class ObserveAndPickupEnv(LiftTheRememberedEnv):
    """Pick up the object whose copy was shown on the display spot, after the copy is gone."""

    memory_fact: ClassVar[str] = "Which object (shape and colour) was shown on the display spot."
    # The place of the shown object's twin in the row, one-hot (left to right, as ``row_slots``
    # lists them): what to lift, not its shape and colour.
    oracle_size: ClassVar[int] = len(SHAPES)
    fact_size: ClassVar[int] = len(SHAPES)  # the shown object (its shape; colour goes with it)

    def _load_scene(self) -> None:
        self.display_pad = add_display_pad(self)
        self.choices, self.choice_halves, self.copies = [], [], []
        for name, kind, size in SHAPES:
            if kind == "box":
                self.choices.append(self.add_box(name, size, (0.5, 0.5, 0.5)))
                self.copies.append(self.add_box(f"shown_{name}", size, (0.5, 0.5, 0.5),
                                                visual_only=True))
            else:
                self.choices.append(self.add_cylinder(name, *size, (0.5, 0.5, 0.5)))
                self.copies.append(self.add_cylinder(f"shown_{name}", *size, (0.5, 0.5, 0.5),
                                                     visual_only=True))
            self.choice_halves.append(half_height(kind, size))
        self.choosing_from = CUE_STEPS

    def _initialize_episode(self, rng: np.random.Generator) -> None:
        shape_at_slot = rng.permutation(len(SHAPES))
        self.shape_at_slot = shape_at_slot
        self.colour_of_shape = rng.permutation(len(COLOURS))
        self.answer = int(rng.integers(len(SHAPES)))  # index of the shown shape
        for slot, shape in zip(row_slots(len(SHAPES), ROW_SPACING, ROW_X), shape_at_slot):
            rest_on_table(self, self.choices[shape], slot, self.choice_halves[shape],
                          yaw=rng.uniform(-MAX_YAW, MAX_YAW))
        display = DISPLAY_XY + rng.uniform(-1.0, 1.0, 2) * DISPLAY_JITTER
        self.display_pad.set_pose(sapien.Pose([*display, 0.001]))
        for shape, (choice, copy) in enumerate(zip(self.choices, self.copies)):
            paint(choice, COLOURS[self.colour_of_shape[shape]][1])
            paint(copy, COLOURS[self.colour_of_shape[shape]][1])
            # On the mat as its twin stands in the row; all but the shown one out of view.
            copy.set_pose(sapien.Pose([*display, 0.002 + self.choice_halves[shape]],
                                      choice.pose.q))
            if shape != self.answer:
                hide(copy)
        self.cue_hidden_at = None

    def _after_step(self) -> None:
        if self.elapsed_steps == CUE_STEPS:
            hide(self.copies[self.answer])
            self.cue_hidden_at = self.elapsed_steps

    def oracle(self) -> np.ndarray:
        slot = int(np.flatnonzero(self.shape_at_slot == self.answer)[0])
        return one_hot(slot, len(SHAPES))
