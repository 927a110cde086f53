"""RotateBlock: turn a block on the table so that its marked face points along an arrow.

In the spirit of RoboTwin 2.0's ``rotate_qrcode`` (turn an object so that its marked face looks
a given way). The block is 5 x 5 x 3 cm with a red stripe on one side face; a blue arrow on the
table beside it shows the target direction, random per episode. The block stands on the left or
right half at a random yaw; the arm on that side picks it from above, turns it in the air and
sets it down where it was. Success: the marked face's outward normal within 15 degrees of the
arrow, the block resting upright on the table, no hand holding it and that side's gripper open.

The needed turn is drawn within +-150 degrees (and at least 30, so that no episode starts solved).
One grasp suffices: the block is square, so the expert may take it by either pair of faces and
turns the wrist from whichever grasp leaves both ends of the turn within the joint limits.
"""

from __future__ import annotations

import numpy as np
import sapien

from aem_bench.registration import register_task
from aem_bench.sim.motion import (
    ARM_SLICES,
    HOVER,
    ExpertFailure,
    MotionPlanner,
    relative_pose,
    top_down_pose,
)
from aem_bench.sim.panda import ARM_DOF, GRIPPER_OPEN
from aem_bench.sim.poses import yaw_quat
from aem_bench.sim.reward import closeness
from aem_bench.sim.tabletop import TableTopEnv

BLOCK_HALF_SIZE = (0.025, 0.025, 0.015)
MARKER_HALF_SIZE = (0.001, 0.018, 0.009)  # a stripe on the block's +x face
ARROW_SHAFT_HALF_SIZE = (0.045, 0.008, 0.001)
ARROW_HEAD_HALF_SIZE = (0.025, 0.008, 0.001)
ARROW_HEAD_ANGLE = np.deg2rad(35.0)
ARROW_OFFSET_X = 0.13  # the arrow lies this far behind the block (away from the camera)
BLOCK_X = (-0.10, 0.02)
BLOCK_ABS_Y = (0.10, 0.22)  # on the side's half, mirrored for the right arm
TURN = (np.deg2rad(30.0), np.deg2rad(150.0))  # |needed turn| is drawn in this range
SUCCESS_ANGLE = np.deg2rad(15.0)
SUCCESS_Z = 0.01  # the block's bottom within 1 cm of the table
UPRIGHT_COS = np.cos(np.deg2rad(10.0))
TURN_STEPS = 2  # the turn is made in this many parts
WRIST_LIMIT = 2.9 - np.deg2rad(20.0)  # rad: the last joint's stop (2.9) less a margin
BLOCK_COLOUR, MARKER_COLOUR, ARROW_COLOUR = (0.92, 0.9, 0.82), (0.85, 0.1, 0.1), (0.1, 0.3, 0.9)


def _wrap(angle: float) -> float:
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


@register_task("AEM/RotateBlock-v0", max_episode_steps=200, arms=1,
               skills=("pick", "rotate", "place"))
class RotateBlockEnv(TableTopEnv):
    """Turn the block so that its red face points along the blue arrow."""

    def _load_scene(self) -> None:
        builder = self.scene.create_actor_builder()
        builder.add_box_collision(half_size=BLOCK_HALF_SIZE,
                                  material=sapien.physx.PhysxMaterial(1.0, 1.0, 0.0),
                                  density=500.0)
        builder.add_box_visual(half_size=BLOCK_HALF_SIZE, material=BLOCK_COLOUR)
        marker = sapien.Pose([BLOCK_HALF_SIZE[0] + MARKER_HALF_SIZE[0], 0.0, 0.0])
        builder.add_box_visual(marker, MARKER_HALF_SIZE, material=MARKER_COLOUR)
        self.block = builder.build(name="block")
        self.track(self.block, float(np.hypot(*BLOCK_HALF_SIZE[:2])))

        # The arrow points along its local +x: a shaft and a two-stroke head at the tip.
        builder = self.scene.create_actor_builder()
        builder.add_box_visual(half_size=ARROW_SHAFT_HALF_SIZE, material=ARROW_COLOUR)
        tip = ARROW_SHAFT_HALF_SIZE[0]
        for sign in (1.0, -1.0):
            angle = sign * ARROW_HEAD_ANGLE
            back = ARROW_HEAD_HALF_SIZE[0] * np.array([np.cos(angle), np.sin(angle), 0.0])
            builder.add_box_visual(sapien.Pose([tip, 0.0, 0.0] - back, yaw_quat(angle)),
                                   ARROW_HEAD_HALF_SIZE, material=ARROW_COLOUR)
        self.arrow = builder.build_kinematic(name="arrow")
        self.track(self.arrow, ARROW_SHAFT_HALF_SIZE[0])

    def _initialize_episode(self, rng: np.random.Generator) -> None:
        self.side = "left" if rng.uniform() < 0.5 else "right"
        sign = 1.0 if self.side == "left" else -1.0
        xy = np.array([rng.uniform(*BLOCK_X), sign * rng.uniform(*BLOCK_ABS_Y)])
        face_yaw = rng.uniform(-np.pi, np.pi)
        turn = rng.choice([-1.0, 1.0]) * rng.uniform(*TURN)
        self.target_yaw = _wrap(face_yaw + turn)
        self.set_actor_pose(self.block, sapien.Pose([*xy, BLOCK_HALF_SIZE[2]],
                                                    yaw_quat(face_yaw)))
        self.arrow.set_pose(sapien.Pose([xy[0] + ARROW_OFFSET_X, xy[1], ARROW_SHAFT_HALF_SIZE[2]],
                                        yaw_quat(self.target_yaw)))

    # --- geometry ----------------------------------------------------------------------------
    @property
    def _face_normal(self) -> np.ndarray:
        """The marked face's outward normal, in the world frame."""
        return self.block.pose.to_transformation_matrix()[:3, 0]

    @property
    def _face_yaw(self) -> float:
        normal = self._face_normal
        return float(np.arctan2(normal[1], normal[0]))

    def evaluate(self) -> dict:
        normal = self._face_normal
        target = np.array([np.cos(self.target_yaw), np.sin(self.target_yaw)])
        flat = normal[:2] / max(np.linalg.norm(normal[:2]), 1e-9)
        error = float(np.arccos(np.clip(flat @ target, -1.0, 1.0)))
        up = self.block.pose.to_transformation_matrix()[2, 2]
        bottom = self.block.pose.p[2] - BLOCK_HALF_SIZE[2]
        resting = bool(up >= UPRIGHT_COS and abs(bottom) < SUCCESS_Z)
        held = bool(self.grasping_arms(self.block))
        side_open = self.arms[self.side].is_open
        aligned = error < SUCCESS_ANGLE
        return {
            "success": aligned and resting and not held and side_open,
            "face_aligned": aligned,
            "block_resting": resting,
            "block_grasped": held,
            "gripper_open": side_open,
            "angle_error": error,
        }

    def compute_dense_reward(self, info: dict) -> float:
        """Staged reward in [0, 1]: reach, grasp, turn, set down, let go."""
        if info["success"]:
            return 1.0
        turned = 1.0 - info["angle_error"] / np.pi
        if info["face_aligned"] and info["block_resting"]:
            stage = 4.0 + 0.5 * (not info["block_grasped"])
            stage += 0.5 * self.arms[self.side].qpos[-1] / GRIPPER_OPEN
        elif info["block_grasped"]:
            stage = 1.0 + 2.0 * turned + info["face_aligned"]
        else:
            stage = closeness(self.arms[self.side].tcp_pose.p, self.block.pose.p)
        return float(stage / 5.0)

    # --- scripted expert ---------------------------------------------------------------------
    def _choose_grasp(self, plan: MotionPlanner) -> float:
        """The closing yaw at pick of the grasp whose turn the wrist can make with the least
        joint motion. A square block can be held by either pair of faces, and each pair from
        two sides. The turn is made in TURN_STEPS parts, each IK seeded from the one before
        (the IK is local: one big turn often fails to converge)."""
        side, arm = self.side, self.arms[self.side]
        centre = self.block.pose.p
        lifted = centre + [0.0, 0.0, HOVER]
        turn = _wrap(self.target_yaw - self._face_yaw)
        start = plan.command[ARM_SLICES[side]][:ARM_DOF]
        best, best_cost = None, np.inf
        for k in range(4):
            pick_yaw = self._face_yaw + k * np.pi / 2
            chain = [arm.inverse_kinematics(top_down_pose(centre, pick_yaw), start)]
            for i in range(1, TURN_STEPS + 1):
                if chain[-1] is None:
                    break
                pose = top_down_pose(lifted, pick_yaw + turn * i / TURN_STEPS)
                chain.append(arm.inverse_kinematics(pose, chain[-1]))
            # Keep off the wrist's stops: the block turns a little in the hand as it is picked.
            if chain[-1] is None or max(abs(q[6]) for q in chain) > WRIST_LIMIT:
                continue
            cost = sum(np.abs(b - a).sum() for a, b in zip([start, *chain], chain))
            if cost < best_cost:
                best, best_cost = pick_yaw, cost
        if best is None:
            raise ExpertFailure(f"no grasp of the block lets the {side} arm turn it by {turn}")
        return best

    def expert(self):
        plan = MotionPlanner(self)
        side, arm = self.side, self.arms[self.side]
        grasp = top_down_pose(self.block.pose.p, self._choose_grasp(plan))
        centre = self.block.pose.p.copy()
        lifted = centre + [0.0, 0.0, HOVER]
        yield from plan.move(25, **{side: sapien.Pose(lifted, grasp.q)})
        yield from plan.move(15, **{side: grasp})
        yield from plan.close(side)
        yield from plan.move(12, **{side: sapien.Pose(lifted, grasp.q)})
        # Turn in the air through the intermediate yaws, then set down where it stood.
        block_in_tcp = relative_pose(arm.tcp_pose, self.block.pose)
        start_yaw, turn = self._face_yaw, _wrap(self.target_yaw - self._face_yaw)
        for i in range(1, TURN_STEPS):
            block_goal = sapien.Pose(lifted, yaw_quat(start_yaw + turn * i / TURN_STEPS))
            yield from plan.move(20, **{side: block_goal * block_in_tcp.inv()})
        goal = np.append(centre[:2], BLOCK_HALF_SIZE[2] + 0.003)
        yield from plan.place(side, self.block, goal, goal_quat=yaw_quat(self.target_yaw),
                              carry_steps=20)
