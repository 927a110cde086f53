"""Shared parts of the block tasks (stacking and ranking): spawning, cube yaw, moving a cube.

Not a task: it registers nothing. The stacking and ranking tasks all spawn cubes at random
non-overlapping places, move them one at a time with a top-down grasp by the arm on the cube's
side, and reward the same staged progress (reach, grasp, carry, release) per cube. The two
ranking tasks differ only in their cubes, so they share :class:`CubeRowEnv`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import sapien

from aem_bench.sim.motion import HOVER, ExpertFailure, MotionPlanner, arm_for
from aem_bench.sim.poses import yaw_of, yaw_quat
from aem_bench.sim.reward import closeness
from aem_bench.sim.tabletop import TableTopEnv

SPAWN_CLEARANCE = 0.03  # m kept free between two cubes' footprints at reset (room for fingers)
SPAWN_TRIES = 1000
CROSS_REACH = 0.09  # an arm reaches this far (m) past the table's midline (y = 0) top-down
DROP_HEIGHT = 0.004  # a carried cube is released this far above its resting height
PARK = {"left": np.array([-0.05, 0.32, 0.25]), "right": np.array([-0.05, -0.32, 0.25])}
PLACED_TOLERANCE = 0.015  # m: a cube this close to its goal counts as placed (dense reward)
FINGER_REACH = 0.055  # m from a grasped cube's centre to the outside of the open fingers


def spawn_cubes(rng: np.random.Generator, half_sizes: Sequence[float], low, high,
                allowed: Callable[[np.ndarray], bool] = lambda xy: True) -> list[np.ndarray]:
    """Rejection-sample one centre (x, y) per cube in the box ``low``..``high`` where
    ``allowed(xy)`` holds, with footprints (circumscribed circles) ``SPAWN_CLEARANCE`` apart."""
    centres: list[np.ndarray] = []
    for half in half_sizes:
        radius = np.sqrt(2.0) * half
        for _ in range(SPAWN_TRIES):
            xy = rng.uniform(low, high)
            if allowed(xy) and all(
                    np.linalg.norm(xy - other) > radius + np.sqrt(2.0) * other_half
                    + SPAWN_CLEARANCE for other, other_half in zip(centres, half_sizes)):
                break
        else:
            raise RuntimeError("could not place the cubes apart; the spawn region is too small")
        centres.append(xy)
    return centres


def place_cubes(env, cubes: Sequence[sapien.Entity], half_sizes: Sequence[float],
                centres: Sequence[np.ndarray], rng: np.random.Generator) -> None:
    """Set each cube resting on the table at its centre with a random yaw."""
    for cube, half, xy in zip(cubes, half_sizes, centres):
        yaw = rng.uniform(-np.pi / 4, np.pi / 4)  # a cube looks the same every quarter turn
        env.set_actor_pose(cube, sapien.Pose([*xy, half], yaw_quat(yaw)))


def wrap(angle: float, period: float) -> float:
    """``angle`` shifted by whole periods into [-period / 2, period / 2)."""
    return float((angle + period / 2) % period - period / 2)


def closing_yaw_near(cube: sapien.Entity, wanted: float) -> float:
    """Of the cube's face normals (every quarter turn), the one nearest ``wanted``: a top-down
    grasp closing along it needs the least wrist turn to end up closing along ``wanted``."""
    return wanted + wrap(yaw_of(cube.pose) - wanted, np.pi / 2)


def reaches(side: str, y: float) -> bool:
    """Whether ``side``'s arm reaches ``y`` top-down (its own half and a strip past the middle)."""
    return (y if side == "left" else -y) >= -CROSS_REACH


def resting_on(top: np.ndarray, top_half: float, base_top: float, tolerance: float) -> bool:
    """Whether a cube centred at ``top`` sits on a surface at height ``base_top``."""
    return bool(abs(top[2] - top_half - base_top) < tolerance)


class CubeMover:
    """The experts' one skill: carry a cube to a goal centre with a top-down grasp.

    The arm on the cube's side picks it (the other arm when the goal is out of its reach), and
    the cube is turned on the way so that the fingers end up closing along ``final_closing_yaw``
    (along x for cubes set side by side in a row along y, so opening fingers miss neighbours).
    After placing, an arm stays above its cube until the other arm needs the space: it parks
    while the other arm approaches its next cube.
    """

    def __init__(self, env):
        self.env = env
        self.plan = MotionPlanner(env)
        self.unparked: set[str] = set()

    def choose_arm(self, cube: sapien.Entity, goal) -> str:
        side = arm_for(cube.pose.p[1])
        if reaches(side, goal[1]):
            return side
        other = "right" if side == "left" else "left"
        if reaches(other, cube.pose.p[1]):
            return other
        raise ExpertFailure(f"no arm reaches both the cube at {cube.pose.p} and the goal {goal}")

    def move_cube(self, cube: sapien.Entity, goal, final_closing_yaw: float = 0.0,
                  side: str | None = None):
        """Yield actions that carry ``cube`` so its centre rests at ``goal``."""
        plan = self.plan
        goal = np.asarray(goal, dtype=np.float64)
        side = side or self.choose_arm(cube, goal)
        # 1. Above the cube, fingers across two faces; the other arm parks meanwhile.
        grasp = cube.pose.p.copy()
        pose = plan.top_down(side, grasp, closing_yaw_near(cube, final_closing_yaw))
        up = np.array([0.0, 0.0, HOVER])
        goals = {side: sapien.Pose(grasp + up, pose.q)}
        for other in self.unparked - {side}:
            goals[other] = plan.top_down(other, PARK[other], np.pi / 2)
        self.unparked = {side}
        yield from plan.move(25, **goals)
        # 2. Down, close, lift.
        yield from plan.move(15, **{side: pose})
        yield from plan.close(side)
        yield from plan.move(15, **{side: sapien.Pose(grasp + up, pose.q)})
        # 3. Turn the cube so the fingers close along the wanted direction, set it down, open.
        fingers_axis = self.env.arms[side].tcp_pose.to_transformation_matrix()[:3, 1]
        closing_now = np.arctan2(fingers_axis[1], fingers_axis[0])
        turn = wrap(final_closing_yaw - closing_now, np.pi)
        goal_quat = yaw_quat(yaw_of(cube.pose) + turn)
        yield from plan.place(side, cube, goal + [0.0, 0.0, DROP_HEIGHT], goal_quat=goal_quat)


def staged_cube_reward(env, moves: Sequence[tuple[sapien.Entity, np.ndarray]],
                       success: bool) -> float:
    """Staged reward in [0, 1] for moving cubes to goal centres in order: per cube reach (1),
    grasp (1), carry to the goal (1); a cube counts as done when it lies at its goal, let go.
    The last stage is both grippers open (success)."""
    if success:
        return 1.0
    stage = 0.0
    for cube, goal in moves:
        grasping = env.grasping_arms(cube)
        near_goal = np.linalg.norm(cube.pose.p - goal) < PLACED_TOLERANCE
        if near_goal and not grasping:
            stage += 3.0
            continue
        if grasping:
            stage += 2.0 + closeness(cube.pose.p, goal)
        else:
            stage += max(closeness(arm.tcp_pose.p, cube.pose.p) for arm in env.arms.values())
        break
    return stage / (3.0 * len(moves) + 1.0)


# --- a row of cubes (the ranking tasks) ------------------------------------------------------
ROW_X = 0.0  # the row's line across the table, in front of both arms
ROW_GAP = 0.015  # m between neighbouring faces as the expert lays the row
ROW_BAND = 0.05  # success: every centre within this of ROW_X ...
ROW_ALIGNED = 0.02  # ... and all centres' x within this of each other
ROW_MAX_GAP = 0.03  # success: neighbouring faces less than this apart
ROW_CLEAR = 0.10  # cubes spawn at least this far from the row's line, leaving it free
ROW_SPAWN_LOW, ROW_SPAWN_HIGH = (-0.16, -0.28), (0.17, 0.28)
RESTING_Z = 0.01  # m: a cube's bottom within this of the table top rests on it


class CubeRowEnv(TableTopEnv):
    """Base of the ranking tasks: lay cubes in a row across the table in a given order.

    ``CUBES`` lists (name, half size, colour) in the wanted order from left to right as the head
    camera sees it (it looks along +x, so its left is +y: the row runs towards -y). Cubes start
    off the row's line, the expert sets them on it one by one, left to right.
    """

    CUBES: tuple[tuple[str, float, tuple[float, float, float]], ...] = ()

    @property
    def halves(self) -> list[float]:
        return [half for _, half, _ in self.CUBES]

    def _load_scene(self) -> None:
        self.cubes = [self.add_box(name, [half] * 3, colour) for name, half, colour in self.CUBES]

    def _initialize_episode(self, rng: np.random.Generator) -> None:
        order = rng.permutation(len(self.cubes))  # which cube gets drawn where: shuffled
        halves = [self.halves[i] for i in order]
        centres = spawn_cubes(rng, halves, ROW_SPAWN_LOW, ROW_SPAWN_HIGH,
                              allowed=lambda xy: abs(xy[0] - ROW_X) >= ROW_CLEAR)
        place_cubes(self, [self.cubes[i] for i in order], halves, centres, rng)

    def keep_clear(self) -> list[tuple[np.ndarray, float]]:
        """The row's slots, with room for the opening fingers: no clutter where cubes go."""
        return [(slot[:2], FINGER_REACH) for slot in self.slots()]

    def slots(self) -> list[np.ndarray]:
        """The expert's goal centres: the row centred on y = 0, faces ``ROW_GAP`` apart."""
        width = 2 * sum(self.halves) + ROW_GAP * (len(self.halves) - 1)
        y, slots = width / 2, []
        for half in self.halves:
            slots.append(np.array([ROW_X, y - half, half]))
            y -= 2 * half + ROW_GAP
        return slots

    def evaluate(self) -> dict:
        centres = np.array([cube.pose.p for cube in self.cubes])
        halves = np.array(self.halves)
        ordered = bool(np.all(np.diff(centres[:, 1]) < 0))  # left to right is decreasing y
        in_band = bool(np.all(np.abs(centres[:, 0] - ROW_X) <= ROW_BAND))
        aligned = in_band and bool(np.ptp(centres[:, 0]) <= ROW_ALIGNED)
        gaps = -np.diff(centres[:, 1]) - halves[:-1] - halves[1:]
        adjacent = bool(np.all(gaps < ROW_MAX_GAP))
        resting = bool(np.all(np.abs(centres[:, 2] - halves) < RESTING_Z))
        grippers_open = all(arm.is_open for arm in self.arms.values())
        held = bool(set().union(*(self.grasping_arms(cube) for cube in self.cubes)))
        return {
            "success": (ordered and aligned and adjacent and resting and grippers_open
                        and not held),
            "ordered": ordered,
            "aligned": aligned,
            "adjacent": adjacent,
            "resting": resting,
            "grippers_open": grippers_open,
            "cube_grasped": held,
            "max_gap": float(gaps.max()),
        }

    def compute_dense_reward(self, info: dict) -> float:
        """Staged: per cube in row order reach, grasp, carry to its slot; then let go."""
        return staged_cube_reward(self, list(zip(self.cubes, self.slots())), info["success"])

    def expert(self):
        mover = CubeMover(self)
        for cube, slot in zip(self.cubes, self.slots()):
            # Fingers close along x, so opening them beside a neighbour in the row misses it.
            yield from mover.move_cube(cube, slot, final_closing_yaw=0.0)


STACK_CUBE_HALF = 0.025  # m, 5 cm cubes
STACK_SPAWN_LOW, STACK_SPAWN_HIGH = (-0.12, -0.28), (0.14, 0.28)
STACK_MIDDLE_STRIP = 0.08  # cubes spawn off |y| < 8 cm, which stays free for a central stack
STACK_SITE = np.array([0.0, 0.0])
STACK_SUCCESS_XY, STACK_SUCCESS_Z = 0.025, 0.01


class CubeStackEnv(TableTopEnv):
    """Base of the stacking tasks: stack 5 cm cubes, each on the one before it.

    ``CUBES`` lists (name, colour) from the bottom of the stack up; each cube is kept as an
    attribute of that name. Each upper cube is carried by the arm on its side. When the bottom
    cube lies out of reach of one of those arms, its own arm first brings it to the middle of the
    table, as RoboTwin's expert builds its stacks at a central spot both arms reach.
    """

    CUBES: tuple[tuple[str, tuple[float, float, float]], ...] = ()

    def _load_scene(self) -> None:
        self.cubes = []
        for name, colour in self.CUBES:
            cube = self.add_box(f"{name}_cube", [STACK_CUBE_HALF] * 3, colour)
            setattr(self, name, cube)
            self.cubes.append(cube)

    def keep_clear(self) -> list[tuple[np.ndarray, float]]:
        """The central stack site, where the expert may move the bottom cube."""
        return [(STACK_SITE, FINGER_REACH)]

    def _initialize_episode(self, rng: np.random.Generator) -> None:
        halves = [STACK_CUBE_HALF] * len(self.cubes)
        centres = spawn_cubes(rng, halves, STACK_SPAWN_LOW, STACK_SPAWN_HIGH,
                              allowed=lambda xy: abs(xy[1]) >= STACK_MIDDLE_STRIP)
        place_cubes(self, self.cubes, halves, centres, rng)

    @staticmethod
    def _above(cube: sapien.Entity) -> np.ndarray:
        """Where a cube's centre rests on top of ``cube``."""
        return cube.pose.p + [0.0, 0.0, 2 * STACK_CUBE_HALF]

    def evaluate(self) -> dict:
        info = {}
        for (lower, _), (upper, _) in zip(self.CUBES, self.CUBES[1:]):
            top, bottom = getattr(self, upper).pose.p, getattr(self, lower).pose.p
            info[f"{upper}_on_{lower}"] = bool(
                np.linalg.norm(top[:2] - bottom[:2]) < STACK_SUCCESS_XY
                and resting_on(top, STACK_CUBE_HALF, bottom[2] + STACK_CUBE_HALF,
                               STACK_SUCCESS_Z))
        grippers_open = all(arm.is_open for arm in self.arms.values())
        held = bool(set().union(*(self.grasping_arms(cube) for cube in self.cubes)))
        return {
            "success": all(info.values()) and grippers_open and not held,
            **info,
            "grippers_open": grippers_open,
            "cube_grasped": held,
        }

    def compute_dense_reward(self, info: dict) -> float:
        """Staged: per upper cube, reach, grasp and carry it onto the one below; let go."""
        moves = [(upper, self._above(lower)) for lower, upper in zip(self.cubes, self.cubes[1:])]
        return staged_cube_reward(self, moves, info["success"])

    def expert(self):
        mover = CubeMover(self)
        bottom, uppers = self.cubes[0], self.cubes[1:]
        arms = [arm_for(cube.pose.p[1]) for cube in uppers]
        if not all(reaches(side, bottom.pose.p[1]) for side in arms):
            yield from mover.move_cube(bottom, [*STACK_SITE, STACK_CUBE_HALF])
        for lower, upper, side in zip(self.cubes, uppers, arms):
            yield from mover.move_cube(upper, self._above(lower),
                                       final_closing_yaw=closing_yaw_near(lower, 0.0), side=side)
