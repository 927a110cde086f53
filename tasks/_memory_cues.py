"""Shared parts of the memory tasks (RMBench, MIKASA-Robo): cues that are shown, then hidden,
objects that come onto the table later, and choosing one object of several by lifting it.

Registers nothing (``tasks/__init__`` imports every module here, so this one only defines).

A cue is hidden by teleporting it under the table top, where no camera sees it; an object that
enters the scene later waits on the floor behind the head camera. Both happen in a task's
``_after_step`` at fixed step counts, so an episode's timeline depends only on its seed.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import sapien

from aem_bench.sim.clutter import set_colour
from aem_bench.sim.motion import ExpertFailure, MotionPlanner, arm_for
from aem_bench.sim.poses import yaw_of, yaw_quat
from aem_bench.sim.reward import closeness
from aem_bench.sim.tabletop import TableTopEnv

# Nine colours told apart at 128x128 under the randomized scenes' lighting (name, RGB).
PALETTE: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("red", (0.85, 0.08, 0.08)),
    ("green", (0.1, 0.7, 0.15)),
    ("blue", (0.1, 0.25, 0.9)),
    ("yellow", (0.95, 0.85, 0.1)),
    ("magenta", (0.9, 0.2, 0.8)),
    ("cyan", (0.1, 0.8, 0.85)),
    ("orange", (1.0, 0.45, 0.0)),
    ("white", (0.97, 0.97, 0.97)),
    ("black", (0.04, 0.04, 0.04)),
)
HIDDEN_Z = -0.5  # m: a hidden cue waits under the table top, out of every camera's view
PARK_X, PARK_Y0, PARK_DY = -2.6, -1.2, 0.15  # floor spots behind the head camera (m)
DISPLAY_XY = np.array([0.22, 0.0])  # the display spot: the far side of the table, in full view
DISPLAY_PAD_HALF = (0.06, 0.06, 0.001)
DISPLAY_PAD_COLOUR = (0.5, 0.5, 0.53)  # mid grey: white and black cues both stand out
LIFT_SUCCESS = 0.05  # m: the chosen object's bottom this high above the table is a pick
LIFT_WRONG = 0.02  # m: any other object lifted this high is a wrong choice, final
LIFT_PLAN = 0.10  # m: how high the expert lifts


def one_hot(index: int, size: int) -> np.ndarray:
    code = np.zeros(size, dtype=np.float32)
    code[index] = 1.0
    return code


def permutation_index(order) -> int:
    """The index of a permutation of 0..n-1 among all of them in lexicographic order: an
    order-type hidden fact as one class label."""
    order = [int(k) for k in order]
    return sorted(itertools.permutations(range(len(order)))).index(tuple(order))


def paint(entity: sapien.Entity, rgb) -> None:
    set_colour(entity, (*rgb, 1.0))


def hide(entity: sapien.Entity) -> None:
    """Take a visual-only cue out of view (under the table), keeping its xy."""
    entity.set_pose(sapien.Pose([*entity.pose.p[:2], HIDDEN_Z], entity.pose.q))


def is_hidden(entity: sapien.Entity) -> bool:
    return bool(entity.pose.p[2] < HIDDEN_Z / 2)


def add_display_pad(env: TableTopEnv) -> sapien.Entity:
    """A light mat marking the display spot; it stays when the cue on it is gone, so the frame
    says that something was shown, not what."""
    return env.add_visual_box("display_pad", DISPLAY_PAD_HALF, DISPLAY_PAD_COLOUR)


class Parking:
    """Floor spots behind the head camera for dynamic objects that are not on the table yet.

    The distractors park at x = -2 (see ``aem_bench.sim.clutter``); these are further back.
    """

    def __init__(self, env: TableTopEnv):
        self.env = env
        self.spots: dict[sapien.Entity, int] = {}

    def park(self, entity: sapien.Entity, half_height: float) -> None:
        index = self.spots.setdefault(entity, len(self.spots))
        self.env.set_actor_pose(entity, sapien.Pose(
            [PARK_X, PARK_Y0 + PARK_DY * index, self.env.floor_top + half_height]))


def rest_on_table(env: TableTopEnv, entity: sapien.Entity, xy, half_height: float,
                  yaw: float = 0.0) -> None:
    """Stand ``entity`` on the table at ``xy``, at rest and asleep (it appears, it does not
    fall)."""
    env.set_actor_pose(entity, sapien.Pose([*xy, half_height], yaw_quat(yaw)))
    body = entity.find_component_by_type(sapien.physx.PhysxRigidDynamicComponent)
    if body is not None and not body.kinematic:
        body.put_to_sleep()


class LiftTheRememberedEnv(TableTopEnv):
    """Base of the tasks where the answer is one of several objects, picked by lifting it.

    A subclass builds ``self.choices`` (dynamic bodies, each graspable top-down with the fingers
    closing along its own x axis) and their ``self.choice_halves`` (half heights), and per
    episode sets ``self.answer`` (the index of the right one), ``self.cue_hidden_at`` and
    ``self.choosing_from`` (the step from which the cue is gone and the choices stand on the
    table: the expert waits until then, so that its demonstrations act on memory only).

    Every memory task offers ``hidden_fact()`` (the fact, as a class index) and ``decision_at``
    (the first step at which that fact decides the expert's action, None before it), which
    ``aem-bench probe`` reads on a replay of each demonstration's seed.

    Success: the right object's bottom at least ``LIFT_SUCCESS`` above the table. Any other
    lifted ``LIFT_WRONG`` or more ends the episode as failed, so trying the options one after
    another does not beat chance.
    """

    choices: list[sapien.Entity]
    choice_halves: list[float]
    answer: int
    choosing_from: int
    cue_hidden_at: int | None

    def hidden_fact(self) -> int:
        """The fact to remember as a class index (what ``aem-bench probe`` reads from a memory):
        here the answer, the index of the object to lift."""
        return self.answer

    @property
    def decision_at(self) -> int | None:
        """The first step at which the hidden fact decides the action (None before it): the
        step the choices are all there, when the expert starts to move."""
        return self.choosing_from if self.elapsed_steps >= self.choosing_from else None

    def lifts(self) -> np.ndarray:
        """How high each choice's bottom is above the table (negative while parked)."""
        return np.array([entity.pose.p[2] - half
                         for entity, half in zip(self.choices, self.choice_halves)])

    def evaluate(self) -> dict:
        lifts = self.lifts()
        wrong = [i for i, lift in enumerate(lifts) if i != self.answer and lift >= LIFT_WRONG]
        lifted = bool(lifts[self.answer] >= LIFT_SUCCESS)
        grasped = bool(self.grasping_arms(self.choices[self.answer]))
        return {
            "success": lifted and not wrong,
            "fail": bool(wrong),
            "answer_lifted": lifted,
            "answer_grasped": grasped,
            "wrong_lifted": bool(wrong),
            "answer_lift": float(lifts[self.answer]),
        }

    def compute_dense_reward(self, info: dict) -> float:
        """Staged reward in [0, 1]: reach the right object, grasp it, lift it; 0 once failed."""
        if info["success"]:
            return 1.0
        if info["fail"]:
            return 0.0
        target = self.choices[self.answer].pose.p
        reach = max(closeness(arm.tcp_pose.p, target) for arm in self.arms.values())
        if info["answer_grasped"]:
            stage = 2.0 + float(np.clip(info["answer_lift"] / LIFT_SUCCESS, 0.0, 1.0))
        else:
            stage = reach
        return float(stage / 3.0)

    def expert(self):
        plan = MotionPlanner(self)
        # Still while the cue is shown and the choices are not all there.
        yield from plan.hold(max(0, self.choosing_from - self.elapsed_steps))
        target = self.choices[self.answer]
        if target.pose.p[2] < 0.0:
            raise ExpertFailure("the answer is not on the table")
        side = arm_for(target.pose.p[1])
        yield from plan.pick(side, target.pose.p.copy(), yaw_of(target.pose), lift=LIFT_PLAN)


def row_slots(count: int, spacing: float, x: float = 0.0) -> list[np.ndarray]:
    """``count`` spots on a line across the table (along y) centred on y = 0, listed from the
    head camera's left (+y) to its right."""
    ys = (np.arange(count) - (count - 1) / 2) * spacing
    return [np.array([x, y]) for y in ys[::-1]]


def grid_slots(count: int, spacing: Sequence[float], max_per_row: int = 5) -> list[np.ndarray]:
    """``count`` spots centred on the table's middle: one row when they fit in ``max_per_row``,
    else a near-square grid (nine make 3 x 3), ``spacing`` (along x, along y) apart."""
    rows = 1 if count <= max_per_row else int(np.ceil(np.sqrt(count)))
    per_row = int(np.ceil(count / rows))
    xs = (np.arange(rows) - (rows - 1) / 2) * spacing[0]
    slots: list[np.ndarray] = []
    for x in xs[::-1]:  # far row first
        slots += row_slots(per_row, spacing[1], x)
    return slots[:count]
