"""Shared parts of the history-memory tasks (PutBackBlock, SwapBlocks, CoverBlocks,
PressButtonCount): spring buttons that count presses, hiding cues, moving cubes, one-hot codes.

Not a task: it registers nothing. These tasks follow RMBench, where what the robot must do next
depends on what happened earlier in the episode (where a block came from, how many moves or
presses are done), not on the current frame.
"""

from __future__ import annotations

import numpy as np
import sapien

from aem_bench.sim.motion import HOVER, MotionPlanner
from aem_bench.sim.panda import ARM_DOF, GRIPPER_CLOSED, GRIPPER_OPEN, HOME_QPOS
from aem_bench.sim.poses import yaw_quat
from aem_bench.tasks._articulations import (
    FINGERTIP_BELOW_TCP,
    X_TO_DOWN,
    add_prismatic_link,
    reset_articulation,
)
from aem_bench.tasks._blocks import DROP_HEIGHT, RESTING_Z, closing_yaw_near

CARRY_HOVER = 0.08  # m above the pick and place points where a carried cube travels

# A push button: a flat base and a round cap on a spring, as ClickBell's bell (1 cm of travel).
BUTTON_BASE_HALF = (0.04, 0.04, 0.012)
BUTTON_CAP_RADIUS, BUTTON_CAP_HALF_HEIGHT = 0.025, 0.008
BUTTON_TRAVEL = 0.01
BUTTON_SPRING = (300.0, 5.0)  # stiffness N/m, damping N s/m
BUTTON_PRELOAD = 0.004  # m: the spring aims above the upper stop, so the cap rests against it
PRESSED_FRACTION, RELEASED_FRACTION = 0.6, 0.3  # of the travel: down past one, up past the other
BUTTON_CAP_REST_Z = 2 * BUTTON_BASE_HALF[2] + BUTTON_TRAVEL + BUTTON_CAP_HALF_HEIGHT
PRESS_OVERSHOOT = 0.004  # fingertips aim this far below the stop: the stop ends the press
PRESS_CLEARANCE = 0.025  # m above the cap's top where fingertips wait between presses
ARMS_BACK = 2e-3  # rad: every arm joint this close to its start counts as back


def arms_back(env) -> bool:
    """Whether every joint of both arms is within ``ARMS_BACK`` of its start (``HOME_QPOS``):
    the body at rest, the same whatever happened before (PutBackBlock-v1's and SwapBlocks-v1's
    decision steps, where only a memory may tell the fact)."""
    return all(np.abs(arm.qpos[:ARM_DOF] - HOME_QPOS).max() < ARMS_BACK
               for arm in env.arms.values())


def cube_resting_at(cube: sapien.Entity, half: float, centre_xy, reach: float) -> bool:
    """Whether the cube rests on the table with its centre within ``reach`` of ``centre_xy``
    in x and in y (a square pad)."""
    p = cube.pose.p
    return bool(np.all(np.abs(p[:2] - np.asarray(centre_xy)) < reach)
                and abs(p[2] - half) < RESTING_Z)


def carry_cube(plan: MotionPlanner, side: str, cube: sapien.Entity, goal,
               closing_yaw: float = 0.0, rest: sapien.Pose | None = None,
               grasp_height: float = 0.0):
    """Pick ``cube`` (or any square body) top-down ``grasp_height`` above its centre and set
    it down with its centre at ``goal``; quicker than the planner's defaults, for episodes of
    several moves. The hand ends at ``rest`` if given."""
    grasp = cube.pose.p + [0.0, 0.0, grasp_height]
    pose = plan.top_down(side, grasp, closing_yaw_near(cube, closing_yaw))
    above = sapien.Pose(grasp + [0.0, 0.0, CARRY_HOVER], pose.q)
    yield from plan.move(15, **{side: above})
    yield from plan.move(8, **{side: pose})
    yield from plan.close(side, steps=7)
    yield from plan.move(8, **{side: above})
    goal = np.asarray(goal, dtype=np.float64) + [0.0, 0.0, DROP_HEIGHT]
    yield from plan.place(side, cube, goal, carry_steps=15, descend_steps=8, hover=CARRY_HOVER,
                          release=False)
    yield from plan.open(side, steps=5)
    tcp = plan.env.arms[side].tcp_pose
    yield from plan.move(5, **{side: sapien.Pose(tcp.p + [0.0, 0.0, 0.05], tcp.q)})
    if rest is not None:
        yield from plan.move(12, **{side: rest})


class Button:
    """A push button built in code: a fixed square base and a round cap on a prismatic joint
    held up by a spring drive. A press is counted once the cap went down past 60% of its travel
    and came back up past 30% (what a real button registers), in :meth:`update`."""

    def __init__(self, env, name: str, colour):
        builder = env.scene.create_articulation_builder()
        base = builder.create_link_builder()
        base.set_name(f"{name}_base")
        base_centre = sapien.Pose([0.0, 0.0, BUTTON_BASE_HALF[2]])
        base.add_box_collision(base_centre, BUTTON_BASE_HALF)
        base.add_box_visual(base_centre, BUTTON_BASE_HALF, material=(0.2, 0.22, 0.25))
        # The joint axis points down, so qpos is how far the cap is pressed: 0 up.
        cap = add_prismatic_link(builder, base, f"{name}_cap", X_TO_DOWN, (0.0, BUTTON_TRAVEL))
        cap_centre = sapien.Pose([0.0, 0.0, BUTTON_CAP_REST_Z], X_TO_DOWN)
        cap.add_cylinder_collision(cap_centre, BUTTON_CAP_RADIUS, BUTTON_CAP_HALF_HEIGHT,
                                   density=300.0)
        cap.add_cylinder_visual(cap_centre, BUTTON_CAP_RADIUS, BUTTON_CAP_HALF_HEIGHT,
                                material=colour)
        self.articulation = builder.build(fix_root_link=True)
        self.articulation.set_name(name)
        self.base_link, self.cap_link = self.articulation.links
        spring = self.articulation.active_joints[0]
        spring.set_drive_properties(*BUTTON_SPRING)
        spring.set_drive_target(-BUTTON_PRELOAD)
        # Links are not tracked by the base class: declare them for clutter and the state obs.
        env.track(self.base_link.entity, float(np.hypot(*BUTTON_BASE_HALF[:2])))
        env.track(self.cap_link.entity, BUTTON_CAP_RADIUS)
        self.presses = 0
        self._down = False

    def reset(self, xy, yaw: float = 0.0) -> None:
        reset_articulation(self.articulation, sapien.Pose([*xy, 0.0], yaw_quat(yaw)), [0.0])
        self.presses = 0
        self._down = False

    @property
    def depth(self) -> float:
        """How far the cap is pushed down (m)."""
        return float(self.articulation.get_qpos()[0])

    @property
    def cap_top(self) -> np.ndarray:
        """The centre of the cap's top face when the cap is up."""
        return self.base_link.entity_pose.p + [0.0, 0.0, BUTTON_CAP_REST_Z
                                               + BUTTON_CAP_HALF_HEIGHT]

    def update(self) -> bool:
        """Call once per step: True on the step a press completes (the cap came back up)."""
        depth = self.depth
        if not self._down and depth >= PRESSED_FRACTION * BUTTON_TRAVEL:
            self._down = True
        elif self._down and depth < RELEASED_FRACTION * BUTTON_TRAVEL:
            self._down = False
            self.presses += 1
            return True
        return False


def press_button(plan: MotionPlanner, side: str, button: Button, times: int = 1,
                 approach: bool = True):
    """Press ``button`` ``times`` times with the closed gripper, lifting the fingertips
    ``PRESS_CLEARANCE`` above the cap between presses, and end ``HOVER`` above it, open."""
    touch = button.cap_top + [0.0, 0.0, FINGERTIP_BELOW_TCP]  # TCP where fingertips meet the cap
    quat = plan.top_down(side, touch, 0.0).q
    above = sapien.Pose(touch + [0.0, 0.0, PRESS_CLEARANCE], quat)
    if approach:
        yield from plan.move(18, grippers={side: GRIPPER_CLOSED},
                             **{side: sapien.Pose(touch + [0.0, 0.0, HOVER], quat)})
        yield from plan.move(8, **{side: above})
    for _ in range(times):
        yield from plan.move(7, **{side: sapien.Pose(touch - [0.0, 0.0, BUTTON_TRAVEL
                                                               + PRESS_OVERSHOOT], quat)})
        yield from plan.hold(3)  # the arm lags its targets: let it reach the stop
        yield from plan.move(7, **{side: above})
    yield from plan.move(10, grippers={side: GRIPPER_OPEN},
                         **{side: sapien.Pose(touch + [0.0, 0.0, HOVER], quat)})
