"""SeqOfColors: watch three colours shown one after another, then press the buttons of those
colours in the same order.

After MIKASA-Robo's ``SeqOfColors`` (memory of a sequence). Three push buttons with caps of
three colours (drawn from a palette of nine) stand in a row across the table. For the first
``SHOW_STEPS`` steps per colour a tile on the display spot takes the three colours in turn, then
it is taken away. A button counts as pressed when its cap goes down by 60% of its travel; it
must come back up (under 30%) before it counts again. Success: the three buttons pressed in the
shown order. A press of any button other than the next one in the sequence ends the episode as
failed.

Chance 1/6: the three colours stay in view on the caps, only their order must be remembered;
guessing one of the 3! orders is right one time in six, and a wrong press is final.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import sapien

from aem_bench.registration import register_task
from aem_bench.sim.motion import MotionPlanner, arm_for
from aem_bench.sim.panda import GRIPPER_CLOSED
from aem_bench.sim.reward import closeness
from aem_bench.sim.tabletop import TableTopEnv

from ._articulations import FINGERTIP_BELOW_TCP, X_TO_DOWN, add_prismatic_link, reset_articulation
from ._memory_cues import (
    DISPLAY_XY,
    PALETTE,
    add_display_pad,
    hide,
    one_hot,
    paint,
    permutation_index,
    row_slots,
)

NUM_BUTTONS = 3
BASE_RADIUS, BASE_HALF_HEIGHT = 0.035, 0.015
CAP_RADIUS, CAP_HALF_HEIGHT = 0.026, 0.008
BASE_COLOUR = (0.2, 0.22, 0.25)
TRAVEL = 0.01  # m a cap can be pushed down
SPRING_STIFFNESS, SPRING_DAMPING = 300.0, 5.0  # N/m, N s/m
SPRING_PRELOAD = 0.004  # m: the spring aims above the upper stop, so the cap rests against it
PRESSED_FRACTION, RELEASED_FRACTION = 0.6, 0.3  # of TRAVEL
CAP_REST_Z = 2 * BASE_HALF_HEIGHT + TRAVEL + CAP_HALF_HEIGHT  # cap centre over the base origin
BUTTON_SPACING = 0.14  # m between the buttons' centres
ROW_X = -0.02
ROW_JITTER = (0.02, 0.02)  # m, the row's random shift in x and y
TILE_HALF = 0.03  # m: the shown colour is a 6 cm cube on the display spot
DISPLAY_JITTER = (0.02, 0.05)
SHOW_STEPS = 6  # steps each colour is shown
CUE_STEPS = SHOW_STEPS * NUM_BUTTONS  # the tile is taken away after this many steps
HOVER = 0.07
PRESS_DEPTH = TRAVEL + 0.004  # the fingertips aim below the stop: the stop, not the arm, ends it


def build_button(env: TableTopEnv, name: str):
    """A push button: a fixed base and a cap on a sprung prismatic joint, qpos = press depth."""
    builder = env.scene.create_articulation_builder()
    base = builder.create_link_builder()
    base.set_name(f"{name}_base")
    base_pose = sapien.Pose([0, 0, BASE_HALF_HEIGHT], X_TO_DOWN)
    base.add_cylinder_collision(base_pose, BASE_RADIUS, BASE_HALF_HEIGHT)
    base.add_cylinder_visual(base_pose, BASE_RADIUS, BASE_HALF_HEIGHT, material=BASE_COLOUR)
    cap = add_prismatic_link(builder, base, f"{name}_cap", X_TO_DOWN, (0.0, TRAVEL))
    cap_pose = sapien.Pose([0, 0, CAP_REST_Z], X_TO_DOWN)
    cap.add_cylinder_collision(cap_pose, CAP_RADIUS, CAP_HALF_HEIGHT, density=300.0)
    cap.add_cylinder_visual(cap_pose, CAP_RADIUS, CAP_HALF_HEIGHT, material=(0.5, 0.5, 0.5))
    button = builder.build(fix_root_link=True)
    button.set_name(name)
    spring = button.active_joints[0]
    spring.set_drive_properties(SPRING_STIFFNESS, SPRING_DAMPING)
    spring.set_drive_target(-SPRING_PRELOAD)
    base_link, cap_link = button.links
    # Articulation links are not tracked by the base class: declare them for clutter and state.
    env.track(base_link.entity, BASE_RADIUS)
    env.track(cap_link.entity, CAP_RADIUS)
    return button


@register_task("AEM/SeqOfColors-v0", max_episode_steps=280, arms=2, skills=("press",),
               memory="sequential", chance=1 / 6)
class SeqOfColorsEnv(TableTopEnv):
    """Press the three coloured buttons in the order their colours were shown."""

    memory_fact: ClassVar[str] = "The order in which the three colours were shown."
    # The button to press next, one-hot over the buttons (left to right), all zeros once all are
    # pressed: the order shown and the presses so far (a press leaves no trace once the cap is
    # back up) in the form the policy acts on.
    oracle_size: ClassVar[int] = NUM_BUTTONS
    # The colours in the order shown, one-hot over the palette each: the fact alone, which the
    # policy must still match to the buttons' colours.
    fact_size: ClassVar[int] = NUM_BUTTONS * len(PALETTE)

    def _load_scene(self) -> None:
        self.buttons = [build_button(self, f"button_{i}") for i in range(NUM_BUTTONS)]
        self.display_pad = add_display_pad(self)
        self.tile = self.add_box("tile", [TILE_HALF] * 3, (0.5, 0.5, 0.5), visual_only=True)

    def _initialize_episode(self, rng: np.random.Generator) -> None:
        shift = rng.uniform(-1.0, 1.0, 2) * ROW_JITTER
        self.colours = rng.choice(len(PALETTE), NUM_BUTTONS, replace=False)  # per button
        self.sequence = rng.permutation(NUM_BUTTONS)  # buttons in the order to press them
        for button, slot, colour in zip(self.buttons, row_slots(NUM_BUTTONS, BUTTON_SPACING,
                                                                ROW_X), self.colours):
            reset_articulation(button, sapien.Pose([*(slot + shift), 0.0]), [0.0])
            paint(button.links[1].entity, PALETTE[colour][1])
        display = DISPLAY_XY + rng.uniform(-1.0, 1.0, 2) * DISPLAY_JITTER
        self.display_pad.set_pose(sapien.Pose([*display, 0.001]))
        self.tile.set_pose(sapien.Pose([*display, 0.002 + TILE_HALF]))
        self._show(0)
        self.pressed = 0  # buttons pressed in the right order so far
        self.wrong_press = False
        self.held_down = [False] * NUM_BUTTONS  # pressed and not yet released
        self.cue_hidden_at = None

    def hidden_fact(self) -> int:
        """The order the buttons are to be pressed in, as one permutation index."""
        return permutation_index(self.sequence)

    @property
    def decision_at(self) -> int | None:
        """The step the last colour is hidden: the expert's first press follows the order."""
        return self.cue_hidden_at

    def _show(self, index: int) -> None:
        paint(self.tile, PALETTE[self.colours[self.sequence[index]]][1])

    # --- the timeline and the presses --------------------------------------------------------
    def _after_step(self) -> None:
        step = self.elapsed_steps
        if step < CUE_STEPS and step % SHOW_STEPS == 0:
            self._show(step // SHOW_STEPS)
        elif step == CUE_STEPS:
            hide(self.tile)
            self.cue_hidden_at = step
        self._count_presses()

    def press_depths(self) -> np.ndarray:
        return np.array([float(button.get_qpos()[0]) for button in self.buttons])

    def _count_presses(self) -> None:
        """A press is the cap going down past 60% of its travel; the button counts again only
        after it came back up under 30%."""
        for index, depth in enumerate(self.press_depths()):
            if self.held_down[index]:
                self.held_down[index] = depth >= RELEASED_FRACTION * TRAVEL
                continue
            if depth < PRESSED_FRACTION * TRAVEL:
                continue
            self.held_down[index] = True
            if self.pressed < NUM_BUTTONS and self.sequence[self.pressed] == index:
                self.pressed += 1
            else:
                self.wrong_press = True

    def _cap_top(self, index: int) -> np.ndarray:
        """The top of a button's cap at rest."""
        base = self.buttons[index].links[0].entity_pose.p
        return base + [0.0, 0.0, CAP_REST_Z + CAP_HALF_HEIGHT]

    def evaluate(self) -> dict:
        return {
            "success": self.pressed == NUM_BUTTONS and not self.wrong_press,
            "fail": self.wrong_press,
            "presses_in_order": self.pressed,
            "next_depth": (float(self.press_depths()[self.sequence[self.pressed]])
                           if self.pressed < NUM_BUTTONS else 0.0),
        }

    def compute_dense_reward(self, info: dict) -> float:
        """Staged reward in [0, 1]: per button in order, reach its cap, press it; 0 once
        failed."""
        if info["success"]:
            return 1.0
        if info["fail"]:
            return 0.0
        target = self._cap_top(self.sequence[self.pressed])
        reach = max(closeness(arm.tcp_pose.p - [0.0, 0.0, FINGERTIP_BELOW_TCP], target)
                    for arm in self.arms.values())
        stage = self.pressed + 0.5 * reach + 0.5 * reach * info["next_depth"] / TRAVEL
        return float(stage / NUM_BUTTONS)

    def fact(self) -> np.ndarray:
        return np.concatenate([one_hot(int(self.colours[button]), len(PALETTE))
                               for button in self.sequence])

    def oracle(self) -> np.ndarray:
        if self.pressed >= NUM_BUTTONS:
            return np.zeros(NUM_BUTTONS, dtype=np.float32)
        return one_hot(int(self.sequence[self.pressed]), NUM_BUTTONS)

    # --- scripted expert ---------------------------------------------------------------------
    def expert(self):
        plan = MotionPlanner(self)
        yield from plan.hold(max(0, CUE_STEPS - self.elapsed_steps))
        for button in self.sequence[self.pressed:]:
            touch = self._cap_top(button) + [0.0, 0.0, FINGERTIP_BELOW_TCP]  # TCP at the cap
            side = arm_for(touch[1])
            quat = plan.top_down(side, touch, 0.0).q
            yield from plan.move(20, grippers={side: GRIPPER_CLOSED},
                                 **{side: sapien.Pose(touch + [0.0, 0.0, HOVER], quat)})
            yield from plan.move(8, **{side: sapien.Pose(touch + [0.0, 0.0, 0.01], quat)})
            yield from plan.move(8, **{side: sapien.Pose(touch - [0.0, 0.0, PRESS_DEPTH], quat)})
            yield from plan.hold(2)
            yield from plan.move(10, **{side: sapien.Pose(touch + [0.0, 0.0, HOVER], quat)})
