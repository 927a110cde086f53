"""SwapBlocks: swap a red and a blue cube between their trays, using the third, free tray.

After RMBench's ``swap_blocks`` (sequential memory). Three identical trays lie in a diagonal row
across the middle of the table; the red and the blue cube stand on two of them, drawn
uniformly (6 layouts). The swap takes three moves, one cube at a time, and the red cube always
goes first: red to the free tray, blue to red's old tray, red to blue's old tray. In v0, after
each move the expert's hand goes back towards where it started (its pose, not its joints); in v1
(``AEM/SwapBlocks-v1``, which supersedes v0 in the suite) the arm comes back to rest at its
starting joints before every move.
Success: each cube rests on the other's original tray (centre within 3 cm in x and y), both
grippers open, neither cube held. Setting the cubes into any other arrangement than the one the
next move makes (e.g. moving blue first, or red twice) fails and ends the episode.

Memory: every move goes to the free tray, and the layout after one or two moves is a possible
starting layout of another episode, so the layout does not say how far the swap has got (which
cube moves next). What memory must hold is that progress, so the memory probe reads the moves
done at the step each move begins (``pooled_probe``), beside a frame and a joint-state probe:
in v0 the body may show what the layout does not, since there the hand is still 2-4 cm from its
start and moving, and some joint up to 0.25 rad from its own (measured on 200 expert episodes);
in v1 every joint is back within 2 mrad of its start (in fact within 1e-5 rad). The
starting trays are no test of memory at the decision step (the end of the first move): with one
move known to be done, the layout there gives them.

Chance: a single-frame policy sees only the layout; the best map from the 6 layouts to "move
red" or "move blue" solves 3 of the 6 starting layouts (found by enumerating all 64 maps; a
random stationary policy cannot do better, as the success rate is linear in each layout's
probability). So chance = 1/2. Guessing the number of moves done uniformly at each decision
would give (2/3)(1/3)(2/3) = 4/27, guessing the cube 1/8.

Oracle (``obs_mode="rgb+oracle"``): the hidden fact itself, the two starting trays and the number
of moves done.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import sapien

from aem_bench.registration import register_task
from aem_bench.sim.motion import MotionPlanner
from aem_bench.sim.poses import yaw_quat
from aem_bench.sim.reward import closeness
from aem_bench.sim.tabletop import TableTopEnv

from ._memory_cues import one_hot
from ._memory_history import arms_back, carry_cube, cube_resting_at

CUBE_HALF = 0.025  # m, a 5 cm cube
TRAY_HALF = (0.045, 0.045, 0.001)
# The row of trays, diagonal so the head camera sees them apart; the left arm reaches all.
TRAY_XY = np.array([[-0.11, 0.08], [0.0, 0.0], [0.11, -0.08]])
JITTER = 0.015  # m: the row shifts by up to this in x and y
ON_TRAY = 0.03  # m: a cube centre this close to a tray's centre in x and in y is on it
MOVES = 3
ACROSS_ROW = float(np.arctan2(TRAY_XY[0, 0] - TRAY_XY[2, 0], TRAY_XY[2, 1] - TRAY_XY[0, 1]))
RED, BLUE = (0.85, 0.1, 0.1), (0.1, 0.25, 0.85)
TRAY_COLOUR = (0.25, 0.38, 0.33)
SIDE = "left"  # one arm makes every move: the hand's pose then depends on nothing else


def swap_plan(red: int, blue: int) -> list[tuple[int, int]]:
    """The (red tray, blue tray) arrangements before and after each of the three moves."""
    free = 3 - red - blue
    return [(red, blue), (free, blue), (free, red), (blue, red)]


@register_task("AEM/SwapBlocks-v0", max_episode_steps=400, arms=1,
               skills=("pick", "place", "sequence"), memory="sequential", chance=1 / 2)
class SwapBlocksEnv(TableTopEnv):
    """Swap the red and blue cubes' trays through the free tray, red first."""

    memory_fact: ClassVar[str] = "Which trays the cubes started on, so how many moves are done."
    # That fact, whole: the red and the blue cube's starting trays (one-hot over the 3 trays) and
    # the moves done (one-hot over 0..3). Together they name the next cube and its goal tray, as
    # PutBackBlock's oracle names the goal mat. The moves done alone are not enough: the policy
    # would still have to find the free tray in a 64x64 frame and set the cube beside it, which
    # an oracle policy given only the moves did not learn (0/50 at 10,000 steps).
    oracle_size: ClassVar[int] = 2 * len(TRAY_XY) + MOVES + 1
    fact_size: ClassVar[int] = len(TRAY_XY) ** 2  # the red and the blue cube's starting trays
    pooled_probe: ClassVar[tuple[str, str]] = (
        "moves_done_at_move_start",
        ("moves done (0, 1 or 2) at the step the expert begins each move, the hand back near "
         "its start after the move before; pooled over the three moves of every episode"))

    def _load_scene(self) -> None:
        self.trays = [self.add_visual_box(f"tray_{k}", TRAY_HALF, TRAY_COLOUR)
                      for k in range(len(TRAY_XY))]
        self.red = self.add_box("red_cube", [CUBE_HALF] * 3, RED)
        self.blue = self.add_box("blue_cube", [CUBE_HALF] * 3, BLUE)
        self.arrangements = swap_plan(0, 1)
        self.moves_done = 0
        self.failed = False
        self.cue_hidden_at: int | None = None
        self.move_starts: list[tuple[int, int]] = []  # (step, moves done)

    def _initialize_episode(self, rng: np.random.Generator) -> None:
        shift = rng.uniform(-JITTER, JITTER, 2)
        for tray, xy in zip(self.trays, TRAY_XY):
            tray.set_pose(sapien.Pose([*(xy + shift), TRAY_HALF[2]]))
        red, blue = (int(k) for k in rng.permutation(3)[:2])
        for cube, k in ((self.red, red), (self.blue, blue)):
            self.set_actor_pose(cube, sapien.Pose([*self._tray_xy(k), CUBE_HALF],
                                                  yaw_quat(rng.uniform(-0.4, 0.4))))
        self.arrangements = swap_plan(red, blue)
        self.moves_done = 0
        self.failed = False
        self.cue_hidden_at = None
        self.move_starts = []

    def hidden_fact(self) -> int:
        """The starting trays of the red and the blue cube, as one index (3 x red + blue)."""
        red, blue = self.arrangements[0]
        return 3 * red + blue

    def pooled_probe_rows(self) -> list[tuple[int, int]]:
        """(step, moves done) at each step the expert began a move at: the frame it chose the
        move's first action from, which depends on the moves done."""
        return list(self.move_starts)

    @property
    def decision_at(self) -> int | None:
        """The step the first move is done: the starting layout has left the frame, and which
        move comes next depends on it."""
        return self.cue_hidden_at

    def _tray_xy(self, k: int) -> np.ndarray:
        return self.trays[k].pose.p[:2]

    def _tray_under(self, cube: sapien.Entity) -> int | None:
        for k in range(len(self.trays)):
            if cube_resting_at(cube, CUBE_HALF, self._tray_xy(k), ON_TRAY):
                return k
        return None

    def _after_step(self) -> None:
        if self.failed or self.moves_done == MOVES:
            return
        now = (self._tray_under(self.red), self._tray_under(self.blue))
        if None in now or now == self.arrangements[self.moves_done]:
            return  # a cube is on its way, or nothing changed
        if now == self.arrangements[self.moves_done + 1]:
            self.moves_done += 1
            if self.cue_hidden_at is None:  # the starting layout is no longer in view
                self.cue_hidden_at = self.elapsed_steps
        else:
            self.failed = True

    def oracle(self) -> np.ndarray:
        red, blue = self.arrangements[0]
        return np.concatenate([one_hot(red, len(TRAY_XY)), one_hot(blue, len(TRAY_XY)),
                               one_hot(self.moves_done, MOVES + 1)])

    def evaluate(self) -> dict:
        held = bool(self.grasping_arms(self.red) | self.grasping_arms(self.blue))
        grippers_open = all(arm.is_open for arm in self.arms.values())
        swapped = self.moves_done == MOVES and not self.failed
        return {
            "success": swapped and grippers_open and not held,
            "fail": self.failed,
            "moves_done": self.moves_done,
            "swapped": swapped,
            "cube_grasped": held,
            "grippers_open": grippers_open,
        }

    def _next_move(self) -> tuple[sapien.Entity, np.ndarray]:
        """The cube the next move carries and its goal centre."""
        k = min(self.moves_done, MOVES - 1)
        before, after = self.arrangements[k], self.arrangements[k + 1]
        cube, tray = (self.red, after[0]) if before[0] != after[0] else (self.blue, after[1])
        return cube, np.append(self._tray_xy(tray), CUBE_HALF)

    def compute_dense_reward(self, info: dict) -> float:
        """Staged: per move reach the cube, grasp it, carry it to its tray; then let go."""
        if info["success"]:
            return 1.0
        if info["fail"]:
            return 0.0
        stage = 3.0 * info["moves_done"]
        if info["moves_done"] < MOVES:
            cube, goal = self._next_move()
            if self.grasping_arms(cube):
                stage += 2.0 + closeness(cube.pose.p, goal)
            else:
                stage += closeness(self.arms[SIDE].tcp_pose.p, cube.pose.p)
        return float(stage / (3.0 * MOVES + 1.0))

    def expert(self):
        plan = MotionPlanner(self)
        rest = self.arms[SIDE].tcp_pose
        for _ in range(MOVES):
            self.move_starts.append((self.elapsed_steps, self.moves_done))
            cube, goal = self._next_move()
            # Fingers close across the row, away from the neighbouring trays.
            yield from carry_cube(plan, SIDE, cube, goal, closing_yaw=ACROSS_ROW, rest=rest)


# The arm's return to its starting joints, the same before every move (the first included): in
# joint space to a waypoint RETURN_VIA off every joint of the start, a wait there, the same last
# stretch to the start, and a wait there. A straight return leaves the arm at rest up to 1e-5 rad
# off its start in a direction that depends on where it came from (and not at all before the
# first move), which a linear probe on the standardised joints reads; after the same last stretch
# from a settled waypoint the joint states at the moves' starts differ by a few float32 steps.
RETURN_VIA = 0.05  # rad, added to every arm joint of the start
RETURN_STEPS = 15  # to the waypoint
VIA_HOLD = 12  # the wait there
LAST_STRETCH = 10  # from the waypoint to the start
SETTLE_STEPS = 15  # the wait at the start, after which the move begins
# The expert's extra wait at the start before each move, drawn per episode (uniform over
# 0..MAX_WAIT steps, from the episode's seed): the step a move begins at varies from episode to
# episode, so neither the step count nor anything that drifts with it (the idle right arm
# alternates between two float states 1e-10 rad apart, step by step) tells the moves done.
MAX_WAIT = 40


def return_to_start(plan: MotionPlanner, side: str):
    """Bring ``side``'s arm back to its starting joints, grippers open, the same way from
    anywhere (see ``RETURN_VIA``), and let it settle there."""
    yield from plan.go_back(RETURN_STEPS, side, offset=RETURN_VIA)
    yield from plan.hold(VIA_HOLD)
    yield from plan.go_back(LAST_STRETCH, side)
    yield from plan.hold(SETTLE_STEPS)


@register_task("AEM/SwapBlocks-v1", max_episode_steps=800, arms=1,
               skills=("pick", "place", "sequence"), memory="sequential", chance=1 / 2,
               supersedes="AEM/SwapBlocks-v0")
class SwapBlocksV1Env(SwapBlocksEnv):
    """SwapBlocks where every move begins with the arm at rest at its starting joints.

    Description: as ``AEM/SwapBlocks-v0``: swap the red and the blue cube between their trays
    through the free third tray in three moves, red first, with the left arm. Before each move
    (the first included) the expert brings the arm back to its starting joints, grippers open, in
    joint space through a waypoint near them (``return_to_start``), and lets it settle there;
    then it waits there a number of steps drawn per episode (``move_waits``, each uniform over
    0..``MAX_WAIT``), and the move begins, so the step each move begins at varies between
    episodes.

    Randomizations: as v0: the row of trays shifts by up to 1.5 cm in x and y, the red and the
    blue cube stand on two of the three trays (6 layouts, uniform), each turned by up to 0.4 rad;
    and the expert's wait before each move (``move_waits``, 0..``MAX_WAIT`` steps each).

    Success: as v0: each cube rests on the other's original tray (centre within 3 cm in x and y),
    both grippers open, neither cube held; any other arrangement than the one the next move makes
    fails and ends the episode. Chance, oracle and hidden fact as v0.

    Why a new version: v0's expert brought the hand back towards its starting pose, not its
    joints, and began the next move while the hand was still 2-4 cm from it and moving; so at each
    move's start the joint state told how many moves were done (on 200 expert episodes a linear
    probe on it read the moves done in 76% of move starts, on the frame features and the joints
    in 87%, against 33% by chance): the body carried the progress the task asks a memory to hold.
    Here every move begins with the arms at rest at their starting joints (each within
    ``ARMS_BACK``, 2 mrad; measured, within 1.2e-5 rad, and the same joint state to 1e-5 rad at
    every move's start of every episode), so the joint state at a move's start is the same
    whatever the moves done. Below that, in the last float32 digits, it is not: a linear probe on
    the standardised raw readings still tells the moves done (``aem-bench body-leak
    --resolution`` reads them rounded).

    Decision step (``decision_at``): the first step after the first move at which every arm joint
    is back within ``ARMS_BACK`` of its start (PutBackBlock-v1's rule): from there, which cube
    moves next depends on what the arm has done, not on where it is.
    """

    pooled_probe: ClassVar[tuple[str, str]] = (
        "moves_done_at_move_start",
        ("moves done (0, 1 or 2) at the step the expert begins each move, the arm at rest at its "
         "starting joints; pooled over the three moves of every episode"))

    def _load_scene(self) -> None:
        super()._load_scene()
        self._decision_at: int | None = None
        self.move_waits: tuple[int, ...] = (0,) * MOVES

    def _initialize_episode(self, rng: np.random.Generator) -> None:
        super()._initialize_episode(rng)
        self._decision_at = None
        # Drawn after the layout, so a seed gives v0's layout.
        self.move_waits = tuple(int(w) for w in rng.integers(0, MAX_WAIT + 1, MOVES))

    @property
    def decision_at(self) -> int | None:
        return self._decision_at

    def _after_step(self) -> None:
        super()._after_step()
        if self._decision_at is None and self.moves_done >= 1 and arms_back(self):
            self._decision_at = self.elapsed_steps

    def expert(self):
        plan = MotionPlanner(self)
        for wait in self.move_waits:
            yield from return_to_start(plan, SIDE)
            yield from plan.hold(wait)  # at rest at the start, for this episode's wait
            # Recorded as the move begins: after the return, the arm at rest at its start.
            self.move_starts.append((self.elapsed_steps, self.moves_done))
            cube, goal = self._next_move()
            yield from carry_cube(plan, SIDE, cube, goal, closing_yaw=ACROSS_ROW)
