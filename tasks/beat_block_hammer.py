"""BeatBlockHammer: pick up a hammer and strike a block with its head.

After RoboTwin 2.0's ``beat_block_hammer``. A hammer (a yellow handle and a dark head, one rigid
body) lies flat on one half of the table with its head towards the middle; a red block is fixed
on the table nearer the middle. The arm on the hammer's side grasps the handle, lifts the hammer,
brings the head over the block and strikes down. Success (as RoboTwin, "the hammer head in
contact with the block"): the head -- not the handle -- touches the block while above the
block's top. A hit is latched: once it happened during an episode, the episode is a success.
"""

from __future__ import annotations

import numpy as np
import sapien

from aem_bench.registration import register_task
from aem_bench.sim.motion import MotionPlanner
from aem_bench.sim.poses import yaw_of, yaw_quat
from aem_bench.sim.reward import closeness
from aem_bench.sim.tabletop import TableTopEnv

from ._containers import SIDE_SIGN, Part, build_composite, collision_shapes, in_frame

HANDLE_HALF_SIZE = (0.10, 0.015, 0.015)  # along the hammer's x axis, across, up
HEAD_HALF_SIZE = (0.03, 0.045, 0.025)
# The head sits at the handle's +x end; both bottoms touch the table, so the hammer lies flat.
HEAD_OFFSET = (HANDLE_HALF_SIZE[0] + HEAD_HALF_SIZE[0], 0.0, HEAD_HALF_SIZE[2] - HANDLE_HALF_SIZE[2])
GRASP_X = 0.03  # grasp the handle this far from its centre, towards the head (less torque)
BLOCK_HALF_SIZE = (0.02, 0.02, 0.02)
CONTACT_DISTANCE = 0.002  # m: a contact point this close counts as a touch
STRIKE_DEPTH = 0.005  # the strike aims this far below the block top
STRIKE_HEIGHT = 0.08  # the head starts its strike this far above the block top


@register_task("AEM/BeatBlockHammer-v0", max_episode_steps=200, arms=1,
               skills=("pick", "tool use"))
class BeatBlockHammerEnv(TableTopEnv):
    """Pick up the hammer and strike the block with its head."""

    def _load_scene(self) -> None:
        parts = [Part("box", HANDLE_HALF_SIZE, (0.0, 0.0, 0.0), (0.9, 0.75, 0.15)),
                 Part("box", HEAD_HALF_SIZE, HEAD_OFFSET, (0.2, 0.2, 0.22))]
        reach = HEAD_OFFSET[0] + np.hypot(HEAD_HALF_SIZE[0], HEAD_HALF_SIZE[1])
        self.hammer = build_composite(self, "hammer", parts, radius=reach)
        self.hammer_head = collision_shapes(self.hammer)[1]
        self.block = self.add_box("block", BLOCK_HALF_SIZE, (0.85, 0.12, 0.1), static=True)
        self.side = "left"
        self.hit = False

    def _initialize_episode(self, rng: np.random.Generator) -> None:
        # The hammer on one half, its head pointing to the middle; the block across the middle.
        self.side = ("left", "right")[int(rng.integers(2))]
        sign = SIDE_SIGN[self.side]
        hammer_xy = rng.uniform([-0.08, 0.20], [0.08, 0.26]) * [1.0, sign]
        hammer_yaw = -sign * np.pi / 2 + rng.uniform(-0.3, 0.3)
        self.set_actor_pose(self.hammer, sapien.Pose([*hammer_xy, HANDLE_HALF_SIZE[2]],
                                                     yaw_quat(hammer_yaw)))
        block_xy = rng.uniform([-0.08, -0.10], [0.08, -0.02]) * [1.0, sign]
        self.block.set_pose(sapien.Pose([*block_xy, BLOCK_HALF_SIZE[2]]))
        self.hit = False

    # --- geometry ----------------------------------------------------------------------------
    def _grasp_point(self) -> np.ndarray:
        return (self.hammer.pose * sapien.Pose([GRASP_X, 0.0, 0.0])).p

    def _head_centre(self) -> np.ndarray:
        return (self.hammer.pose * sapien.Pose(HEAD_OFFSET)).p

    def _block_top(self) -> np.ndarray:
        return self.block.pose.p + [0.0, 0.0, BLOCK_HALF_SIZE[2]]

    def _head_touches_block(self) -> bool:
        for contact in self.scene.get_contacts():
            if self.hammer_head not in contact.shapes:
                continue
            if self.block not in (body.entity for body in contact.bodies):
                continue
            if any(point.separation < CONTACT_DISTANCE for point in contact.points):
                return True
        return False

    def evaluate(self) -> dict:
        head_over_block = bool(in_frame(self.block.pose, self._head_centre())[2]
                               > BLOCK_HALF_SIZE[2])
        touching = self._head_touches_block()
        # Contacts are those of the last physics step: at reset (no step yet) they are stale.
        if self.elapsed_steps > 0 and touching and head_over_block:
            self.hit = True
        return {
            "success": self.hit,
            "head_touches_block": touching,
            "head_over_block": head_over_block,
            "hammer_grasped": bool(self.grasping_arms(self.hammer)),
            "head_height": float(self._head_centre()[2] - HEAD_HALF_SIZE[2]),
        }

    def compute_dense_reward(self, info: dict) -> float:
        """Staged reward in [0, 1]: reach the handle, grasp, bring the head onto the block."""
        if info["success"]:
            return 1.0
        if info["hammer_grasped"]:
            head_bottom = self._head_centre() - [0.0, 0.0, HEAD_HALF_SIZE[2]]
            stage = 1.0 + 2.0 * closeness(head_bottom, self._block_top())
        else:
            stage = closeness(self.arms[self.side].tcp_pose.p, self._grasp_point())
        return float(stage / 3.0)

    # --- scripted expert ---------------------------------------------------------------------
    def expert(self):
        plan = MotionPlanner(self)
        # Close the fingers across the handle.
        yield from plan.pick(self.side, self._grasp_point(), yaw_of(self.hammer.pose) + np.pi / 2)
        # Level the hammer with its head bottom over the block top, then strike down fast.
        yaw = yaw_of(self.hammer.pose)
        head_bottom_offset = (sapien.Pose(q=yaw_quat(yaw)) * sapien.Pose(
            [HEAD_OFFSET[0], 0.0, -HANDLE_HALF_SIZE[2]])).p
        goal = self._block_top() - head_bottom_offset - [0.0, 0.0, STRIKE_DEPTH]
        yield from plan.place(self.side, self.hammer, goal, goal_quat=yaw_quat(yaw),
                              hover=STRIKE_HEIGHT, descend_steps=8, release=False)
        yield from plan.hold(5)
