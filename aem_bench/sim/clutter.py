"""Distractors and appearance randomization: the cluttered and randomized scene variants.

RoboTwin 2.0 trains and tests in cluttered tables with random textures, lighting and table
heights, because a policy that only ever saw one clean table learns that table. Here the
distractors are ten fixed primitive shapes built once per environment; each episode picks how
many (half to all) are on the table, where, and in what colour. They never overlap a task
object's footprint, and they do not count in any success check.
"""

from __future__ import annotations

import colorsys

import numpy as np
import sapien

from aem_bench.sim.poses import look_at, yaw_quat

N_DISTRACTORS = 10
CLUTTER_X = (-0.30, 0.30)  # where distractors may stand on the table (reachable, in view)
CLUTTER_Y = (-0.42, 0.42)
CLEARANCE = 0.03  # free space kept between a distractor and anything else on the table
ARM_BASE_CLEARANCE = 0.18  # no distractor this close to an arm base
TABLE_HEIGHT_JITTER = 0.03  # m, as RoboTwin 2.0's +-3 cm
CAMERA_JITTER = 0.03  # m, applied to both the camera's eye and its target point
PLACEMENT_TRIES = 60


def random_colour(rng: np.random.Generator, saturation=(0.3, 0.9), value=(0.3, 0.95)):
    hue = rng.uniform()
    return (*colorsys.hsv_to_rgb(hue, rng.uniform(*saturation), rng.uniform(*value)), 1.0)


def set_colour(entity: sapien.Entity, rgba) -> None:
    for shape in entity.find_component_by_type(sapien.render.RenderBodyComponent).render_shapes:
        shape.material.set_base_color(list(rgba))


class SceneRandomizer:
    """Owns the distractors of one environment and re-draws the scene variant each episode."""

    def __init__(self, env, randomize_appearance: bool):
        self.env = env
        self.randomize_appearance = randomize_appearance
        # A fixed generator: every process builds the same ten shapes.
        shape_rng = np.random.default_rng(2024)
        self.distractors: list[tuple[sapien.Entity, float, float]] = []  # entity, radius, half-h
        for i in range(N_DISTRACTORS):
            if i % 2 == 0:
                half = shape_rng.uniform([0.012, 0.012, 0.010], [0.03, 0.03, 0.035])
                entity = env.add_box(f"distractor_{i}", half, (0.5, 0.5, 0.5), density=300.0,
                                     task_object=False)
                self.distractors.append((entity, float(np.hypot(half[0], half[1])), half[2]))
            else:
                radius, half_height = shape_rng.uniform([0.012, 0.010], [0.03, 0.04])
                entity = env.add_cylinder(f"distractor_{i}", radius, half_height,
                                          (0.5, 0.5, 0.5), density=300.0, task_object=False)
                self.distractors.append((entity, float(radius), float(half_height)))
        self._park_all()

    def _park(self, index: int) -> None:
        """Off the table, behind the head camera, where nothing sees or touches it."""
        entity, _, half_height = self.distractors[index]
        self.env.set_actor_pose(entity, sapien.Pose([-2.0, -1.0 + 0.2 * index,
                                                     self.env.floor_top + half_height]))

    def _park_all(self) -> None:
        for index in range(N_DISTRACTORS):
            self._park(index)

    def apply(self, rng: np.random.Generator) -> None:
        self._place_distractors(rng)
        if self.randomize_appearance:
            self._randomize_appearance(rng)

    def _place_distractors(self, rng: np.random.Generator) -> None:
        occupied = list(self.env.footprints())
        occupied += [(arm.base_pose.p[:2], ARM_BASE_CLEARANCE) for arm in self.env.arms.values()]
        count = int(rng.integers(N_DISTRACTORS // 2, N_DISTRACTORS + 1))
        on_table = set(rng.permutation(N_DISTRACTORS)[:count].tolist())
        for index, (entity, radius, half_height) in enumerate(self.distractors):
            set_colour(entity, random_colour(rng))
            if index not in on_table:
                self._park(index)
                continue
            for _ in range(PLACEMENT_TRIES):
                xy = rng.uniform([CLUTTER_X[0], CLUTTER_Y[0]], [CLUTTER_X[1], CLUTTER_Y[1]])
                if all(np.linalg.norm(xy - np.asarray(centre)) > radius + other + CLEARANCE
                       for centre, other in occupied):
                    break
            else:  # the table is full: leave this one out
                self._park(index)
                continue
            occupied.append((xy, radius))
            self.env.set_actor_pose(entity, sapien.Pose([*xy, half_height],
                                                        yaw_quat(rng.uniform(-np.pi, np.pi))))

    def _randomize_appearance(self, rng: np.random.Generator) -> None:
        env = self.env
        set_colour(env.table, random_colour(rng, saturation=(0.0, 0.6), value=(0.35, 0.9)))
        set_colour(env.floor, random_colour(rng, saturation=(0.0, 0.5), value=(0.15, 0.6)))
        set_colour(env.wall, random_colour(rng, saturation=(0.0, 0.7), value=(0.2, 0.9)))
        env.scene.set_ambient_light(list(rng.uniform(0.3, 0.6) * rng.uniform(0.85, 1.0, 3)))
        env.sun.set_color(list(rng.uniform(0.5, 1.0) * rng.uniform(0.8, 1.0, 3)))
        direction = np.array([*rng.uniform(-0.6, 0.6, 2), -1.0])
        env.sun.entity.set_pose(look_at((0, 0, 0), direction, up=(1.0, 0.0, 0.0)))
        # The table's height relative to the robots: move the arms, not the table, so that every
        # task keeps its table top at z = 0.
        offset = rng.uniform(-TABLE_HEIGHT_JITTER, TABLE_HEIGHT_JITTER)
        for arm in env.arms.values():
            arm.set_base_height(-offset)
        eye = np.asarray(env.head_camera_eye) + rng.uniform(-CAMERA_JITTER, CAMERA_JITTER, 3)
        target = np.asarray(env.head_camera_target) + rng.uniform(-CAMERA_JITTER,
                                                                  CAMERA_JITTER, 3)
        env.cameras["rgb"].set_local_pose(look_at(eye, target))
