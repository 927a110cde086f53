"""CoverBlocks: remember where the red, green and blue cubes are once lids cover them, then
uncover them in that order.

After RMBench's ``cover_blocks`` (spatial memory). Three 4 cm cubes, red, green and blue in a
random order (uniform over the 6 orders), stand in a row across the table. After
``CUE_STEPS`` steps three identical lids (boxes open at the bottom) appear over them. The robot
lifts the lids off in the order red, green, blue and sets them down behind the row. A lid is off
once its bottom is 1 cm above the table or its centre 2.5 cm away from its place (low: peeking
under a lid already counts). Success: the three lids came off in that order, each rests on the
table clear of every cube, both grippers open. Lifting a lid out of order fails and ends the
episode.

Memory: under the lids the three places look the same. Chance: guessing the order uniformly
succeeds 1/6 of the time (the first lid is right 1/3 of the time, the second 1/2; the third then
is the last one left).
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import sapien

from aem_bench.registration import register_task
from aem_bench.sim.motion import MotionPlanner, arm_for
from aem_bench.sim.poses import yaw_quat
from aem_bench.sim.reward import closeness
from aem_bench.sim.tabletop import TableTopEnv

from ._memory_cues import one_hot, permutation_index
from ._memory_history import carry_cube

CUE_STEPS = 8  # the cubes are seen for this many steps, then covered
CUBE_HALF = 0.02  # m, a 4 cm cube
COLOURS = {"red": (0.85, 0.1, 0.1), "green": (0.1, 0.7, 0.15), "blue": (0.1, 0.25, 0.85)}
ORDER = ("red", "green", "blue")  # the order in which the cubes are uncovered
LID_HALF, LID_HALF_HEIGHT, LID_WALL = 0.032, 0.03, 0.004  # m: 6.4 cm wide, 6 cm tall
LID_COLOUR = (0.75, 0.72, 0.65)
LID_GRASP = LID_HALF_HEIGHT - 0.012  # the fingers hold the walls' upper part
SLOT_X, SLOT_Y = -0.03, (0.13, 0.0, -0.13)  # the row of cubes
DISCARD_DX = 0.14  # m: a lifted lid is set down this far behind its slot
JITTER = 0.015  # m: the row shifts by up to this in x and y
# m: a lid is off once its bottom is this high, or its centre this far from its place. Low, so
# that lifting a lid a little to peek under it already counts.
LIFTED, MOVED_AWAY = 0.01, 0.025
CLEAR = LID_HALF + CUBE_HALF * np.sqrt(2) + 0.005  # a resting lid this far away covers nothing


def set_visible(entity: sapien.Entity, visible: bool) -> None:
    entity.find_component_by_type(sapien.render.RenderBodyComponent).visibility = float(visible)


@register_task("AEM/CoverBlocks-v0", max_episode_steps=350, arms=2,
               skills=("pick", "place", "order"), memory="spatial", chance=1 / 6)
class CoverBlocksEnv(TableTopEnv):
    """Lift the identical lids off the red, the green, then the blue cube."""

    memory_fact: ClassVar[str] = "Which lid covers the red, the green and the blue cube."
    # The slot of the lid to lift next, one-hot over the slots; all zeros once all are off (or
    # once a lid came off out of order, when no next lid is right).
    oracle_size: ClassVar[int] = len(SLOT_Y)
    fact_size: ClassVar[int] = math.factorial(len(ORDER))  # which lid covers which cube

    def _load_scene(self) -> None:
        self.cubes = {name: self.add_box(f"{name}_cube", [CUBE_HALF] * 3, colour)
                      for name, colour in COLOURS.items()}
        self.lids = [self._build_lid(f"lid_{k}") for k in range(len(SLOT_Y))]
        self.slot_of = {name: k for k, name in enumerate(ORDER)}
        self.slots = [np.array([SLOT_X, y]) for y in SLOT_Y]
        self.slot_yaw = np.zeros(len(SLOT_Y))
        self.uncovered: list[int] = []  # slots whose lid is off, in the order they came off
        self.failed = False
        self.cue_hidden_at: int | None = None
        self.decision_at: int | None = None

    def _build_lid(self, name: str) -> sapien.Entity:
        """A box open at the bottom, its origin at its centre: four walls and a top."""
        builder = self.scene.create_actor_builder()
        material = sapien.physx.PhysxMaterial(1.0, 1.0, 0.0)
        inner = LID_HALF - LID_WALL / 2
        wall_height = LID_HALF_HEIGHT - LID_WALL / 2
        parts = [((0.0, 0.0, LID_HALF_HEIGHT - LID_WALL / 2), (LID_HALF, LID_HALF, LID_WALL / 2))]
        for sign in (-1.0, 1.0):
            parts.append(((sign * inner, 0.0, -LID_WALL / 2),
                          (LID_WALL / 2, LID_HALF, wall_height)))
            parts.append(((0.0, sign * inner, -LID_WALL / 2),
                          (LID_HALF - LID_WALL, LID_WALL / 2, wall_height)))
        for centre, half in parts:
            builder.add_box_collision(sapien.Pose(centre), half, material=material, density=400.0)
            builder.add_box_visual(sapien.Pose(centre), half, material=LID_COLOUR)
        lid = builder.build(name=name)
        self.track(lid, float(np.hypot(LID_HALF, LID_HALF)))
        return lid

    def _initialize_episode(self, rng: np.random.Generator) -> None:
        shift = rng.uniform(-JITTER, JITTER, 2)
        slots = [np.array([SLOT_X, y]) + shift for y in SLOT_Y]
        self.slot_of = {name: int(k) for name, k in zip(ORDER, rng.permutation(len(slots)))}
        self.slot_yaw = rng.uniform(-0.3, 0.3, len(slots))
        for name, k in self.slot_of.items():
            self.set_actor_pose(self.cubes[name], sapien.Pose([*slots[k], CUBE_HALF],
                                                              yaw_quat(self.slot_yaw[k])))
        # The lids stand over the cubes from the start, unseen until the cue ends. Teleporting
        # them in mid-episode instead would meet PhysX's contact caches from earlier episodes,
        # and the steps after it would differ in the last bits from one run to the next.
        for lid, xy, yaw in zip(self.lids, slots, self.slot_yaw):
            self.set_actor_pose(lid, sapien.Pose([*xy, LID_HALF_HEIGHT], yaw_quat(yaw)))
            set_visible(lid, False)
        self.slots = slots
        self.uncovered = []
        self.failed = False
        self.cue_hidden_at = None
        self.decision_at: int | None = None

    def hidden_fact(self) -> int:
        """Which lid covers the red, the green and the blue cube, as one permutation index."""
        return permutation_index([self.slot_of[name] for name in ORDER])

    def keep_clear(self) -> list[tuple[np.ndarray, float]]:
        """Where the lids are set down."""
        return [(self._discard_xy(k), LID_HALF * np.sqrt(2)) for k in range(len(SLOT_Y))]

    def _discard_xy(self, k: int) -> np.ndarray:
        return self.slots[k] + [DISCARD_DX, 0.0]

    def _lid_off(self, k: int) -> bool:
        p = self.lids[k].pose.p
        return bool(p[2] - LID_HALF_HEIGHT > LIFTED
                    or np.linalg.norm(p[:2] - self.slots[k]) > MOVED_AWAY)

    def _after_step(self) -> None:
        if self.elapsed_steps == CUE_STEPS:
            for lid in self.lids:
                set_visible(lid, True)
            self.cue_hidden_at = self.elapsed_steps
        if self.cue_hidden_at is None or self.failed:
            return
        for k in range(len(self.lids)):
            if k not in self.uncovered and self._lid_off(k):
                self.uncovered.append(k)
                # The first lid is off: which one comes next is memory alone (the hand
                # headed for the first one while the cubes were still in view).
                if self.decision_at is None:
                    self.decision_at = self.elapsed_steps
                wanted = self.slot_of[ORDER[len(self.uncovered) - 1]]
                self.failed = self.failed or k != wanted

    def oracle(self) -> np.ndarray:
        if self.failed or len(self.uncovered) >= len(ORDER):
            return np.zeros(len(SLOT_Y), dtype=np.float32)
        return one_hot(self.slot_of[ORDER[len(self.uncovered)]], len(SLOT_Y))

    def _lid_clear(self, lid: sapien.Entity) -> bool:
        """Resting on the table, away from every cube."""
        p = lid.pose.p
        return bool(abs(p[2] - LID_HALF_HEIGHT) < 0.01 and all(
            np.linalg.norm(p[:2] - cube.pose.p[:2]) > CLEAR for cube in self.cubes.values()))

    def evaluate(self) -> dict:
        all_off = len(self.uncovered) == len(ORDER) and not self.failed
        lids_clear = all(self._lid_clear(lid) for lid in self.lids)
        grippers_open = all(arm.is_open for arm in self.arms.values())
        return {
            "success": all_off and lids_clear and grippers_open,
            "fail": self.failed,
            "lids_off": len(self.uncovered),
            "lids_clear": lids_clear,
            "grippers_open": grippers_open,
        }

    def compute_dense_reward(self, info: dict) -> float:
        """Staged: per lid in order reach it, lift it, set it down behind; then let go."""
        if info["success"]:
            return 1.0
        if info["fail"]:
            return 0.0
        done = info["lids_off"]
        stage = 3.0 * max(0, done - 1)
        if done < len(ORDER) and (done == 0 or self._lid_clear(self.lids[self.uncovered[-1]])):
            # Reach the next lid.
            stage = 3.0 * done
            lid = self.lids[self.slot_of[ORDER[done]]]
            stage += max(closeness(arm.tcp_pose.p, lid.pose.p + [0.0, 0.0, LID_GRASP])
                         for arm in self.arms.values())
        else:
            # Carry the last lid lifted to its spot behind the row.
            k = self.uncovered[-1]
            goal = np.append(self._discard_xy(k), LID_HALF_HEIGHT)
            stage += 1.0 + closeness(self.lids[k].pose.p, goal)
        return float(stage / (3.0 * len(ORDER) + 1.0))

    def expert(self):
        plan = MotionPlanner(self)
        first = self.slot_of[ORDER[0]]
        side = arm_for(self.slots[first][1])
        # While the cubes are still in view, the hand heads for the first one.
        above = np.append(self.slots[first], 0.2)
        yield from plan.move(CUE_STEPS + 2, **{side: plan.top_down(side, above, 0.0)})
        for name in ORDER:
            k = self.slot_of[name]
            side = arm_for(self.slots[k][1])
            goal = np.append(self._discard_xy(k), LID_HALF_HEIGHT)
            yield from carry_cube(plan, side, self.lids[k], goal, grasp_height=LID_GRASP)
