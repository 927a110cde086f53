"""RememberColor on ManiSkill3: the same task as ``tasks/remember_color.py``, batched, so that
thousands of episodes run in parallel on a GPU (``sim_backend="physx_cuda"``).

A single Panda (ManiSkill3's ``TableSceneBuilder`` layout) sees a cube on the table's middle for
the first ``CUE_STEPS`` steps; it is then taken away, and ``APPEAR_STEP`` steps into the episode
``num_choices`` cubes of distinct colours stand in a row or a 3 x 3 grid. Success: the cube of the
shown colour lifted, its bottom ``LIFT_SUCCESS`` above the table; lifting another one
``LIFT_WRONG`` ends the episode as failed. Chance ``1 / num_choices``.

Why nine cubes of each kind: on the GPU every parallel scene must hold the same bodies, and a
body's colour cannot change per scene. So every scene holds one shown cube and one choice cube
per palette colour; an episode puts the ones it draws on the table and leaves the others parked
out of view. The draws come from ManiSkill's per-scene episode RNG, so a seed gives the same
episode on the CPU and on the GPU, whatever the scene's index in the batch.

State observations list the cubes by palette colour (parked ones included), so a state-based
policy faces the same memory problem as a pixel one: the shown cube's pose gives the colour only
while it is shown. ``oracle=True`` adds the answer (one-hot over palette colours).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import sapien
import torch
from mani_skill.agents.robots import Panda
from mani_skill.envs.sapien_env import BaseEnv
from mani_skill.sensors.camera import CameraConfig
from mani_skill.utils import sapien_utils
from mani_skill.utils.building import actors
from mani_skill.utils.registration import register
from mani_skill.utils.scene_builder.table import TableSceneBuilder
from mani_skill.utils.structs.pose import Pose

from .._memory_cues import HIDDEN_Z, LIFT_PLAN, LIFT_SUCCESS, LIFT_WRONG, PALETTE, grid_slots
from ..remember_color import APPEAR_STEP, CUE_STEPS, SLOT_SPACING

CUBE_HALF = 0.02  # m: ManiSkill's PickCube size, an easy top-down grasp for its Panda
SHOWN_HALF = 0.03  # m: the shown cube, a little larger
DISPLAY_JITTER = 0.03  # m: the shown cube's random shift in x and y about the table's middle
PARK_X, PARK_Y0, PARK_DY = 2.0, -0.9, 0.2  # floor spots far behind the camera (m)
FLOOR_Z = -0.9196429  # m: ManiSkill3's table top is at 0, its floor this far below
APPROACH_HEIGHT = 0.08  # m above the answer's centre, where the expert lines up
ALIGNED = 0.01  # m in xy: close enough to descend
AT_CUBE = 0.005  # m above the answer's centre: close enough to close the gripper


class RememberColorMS3Env(BaseEnv):
    """Lift the cube whose colour matches the cube shown at the start (ManiSkill3, batched)."""

    SUPPORTED_ROBOTS: ClassVar[list[str]] = ["panda"]
    agent: Panda
    num_choices: ClassVar[int] = 3

    def __init__(self, *args, robot_uids="panda", robot_init_qpos_noise=0.02, oracle=False,
                 **kwargs):
        self.robot_init_qpos_noise = robot_init_qpos_noise
        self.oracle = oracle
        super().__init__(*args, robot_uids=robot_uids, **kwargs)

    @property
    def _default_sensor_configs(self):
        pose = sapien_utils.look_at(eye=[0.3, 0, 0.6], target=[-0.1, 0, 0.1])
        return [CameraConfig("base_camera", pose, 128, 128, np.pi / 2, 0.01, 100)]

    @property
    def _default_human_render_camera_configs(self):
        pose = sapien_utils.look_at([0.6, 0.7, 0.6], [0.0, 0.0, 0.35])
        return CameraConfig("render_camera", pose, 512, 512, 1, 0.01, 100)

    def _load_agent(self, options: dict):
        super()._load_agent(options, sapien.Pose(p=[-0.615, 0, 0]))

    def _load_scene(self, options: dict):
        self.table_scene = TableSceneBuilder(self, robot_init_qpos_noise=self.robot_init_qpos_noise)
        self.table_scene.build()
        self.shown = [actors.build_cube(self.scene, SHOWN_HALF, [*rgb, 1], f"shown_{name}",
                                        body_type="kinematic", add_collision=False,
                                        initial_pose=sapien.Pose([0.0, 0.0, HIDDEN_Z]))
                      for name, rgb in PALETTE]
        self.choices = [actors.build_cube(self.scene, CUBE_HALF, [*rgb, 1], f"cube_{name}",
                                          initial_pose=self._parked(k))
                        for k, (name, rgb) in enumerate(PALETTE)]
        self.slots = torch.tensor(np.array(grid_slots(self.num_choices, SLOT_SPACING)),
                                  dtype=torch.float32, device=self.device)
        n = self.num_envs
        # Per scene: the palette colour on each place, the answer's colour, the shown cube's spot.
        self.slot_colour = torch.zeros((n, self.num_choices), dtype=torch.long, device=self.device)
        self.answer_colour = torch.zeros(n, dtype=torch.long, device=self.device)
        self.display_xy = torch.zeros((n, 2), device=self.device)

    def _parked(self, colour: int) -> sapien.Pose:
        """A choice cube's waiting spot on the floor, one per colour, out of every camera's view
        (and well inside this scene's share of the GPU layout, ``sim_config.spacing`` = 5 m)."""
        return sapien.Pose([PARK_X, PARK_Y0 + colour * PARK_DY, FLOOR_Z + CUBE_HALF])

    def _initialize_episode(self, env_idx: torch.Tensor, options: dict):
        b = len(env_idx)
        self.table_scene.initialize(env_idx)
        rng = self._batched_episode_rng[env_idx]
        colours = np.stack([r.permutation(len(PALETTE))[:self.num_choices] for r in rng.rngs])
        answer_slot = rng.randint(self.num_choices)
        display = rng.uniform(-DISPLAY_JITTER, DISPLAY_JITTER, size=2)
        with torch.device(self.device):
            self.slot_colour[env_idx] = torch.as_tensor(colours)
            self.answer_colour[env_idx] = torch.as_tensor(colours[np.arange(b), answer_slot])
            self.display_xy[env_idx] = torch.as_tensor(display, dtype=torch.float32)
            for k in range(len(PALETTE)):
                shown_here = self.answer_colour[env_idx] == k
                p = torch.tensor([0.0, 0.0, HIDDEN_Z]).repeat(b, 1)
                p[shown_here, :2] = self.display_xy[env_idx][shown_here]
                p[shown_here, 2] = SHOWN_HALF
                self.shown[k].set_pose(Pose.create_from_pq(p))
                parked = torch.tensor(self._parked(k).p).repeat(b, 1)
                self.choices[k].set_pose(Pose.create_from_pq(parked))

    def _after_control_step(self):
        # The cue leaves and the choices arrive at fixed step counts of each scene's episode;
        # scenes reset at different times, so each event applies to the scenes that reach it.
        steps = self._elapsed_steps + 1  # the step being taken, counted after this hook
        hide, appear = steps == CUE_STEPS, steps == APPEAR_STEP
        if not (hide.any() or appear.any()):
            return
        if self.gpu_sim_enabled:
            self.scene._gpu_fetch_all()
        n = self.num_envs
        for k in range(len(PALETTE)):
            if hide.any():
                p = self.shown[k].pose.p.clone()
                p[hide] = torch.tensor([0.0, 0.0, HIDDEN_Z], device=self.device)
                self.shown[k].set_pose(Pose.create_from_pq(p, self.shown[k].pose.q))
            if appear.any():
                on_slot = self.slot_colour == k  # (n, num_choices)
                arrives = appear & on_slot.any(dim=1)
                if not arrives.any():
                    continue
                state = self.choices[k].get_state().clone()  # pose (7) and velocities (6)
                target = torch.zeros((n, 13), device=self.device)
                target[:, :2] = self.slots[on_slot.float().argmax(dim=1)]
                target[:, 2] = CUBE_HALF
                target[:, 3] = 1.0  # identity quaternion (wxyz): faces square to the gripper
                self.choices[k].set_state(torch.where(arrives[:, None], target, state))
        if self.gpu_sim_enabled:
            self.scene._gpu_apply_all()

    # ----------------------------------------------------------------------------------------- #
    # Success, observations, reward
    # ----------------------------------------------------------------------------------------- #
    def _choice_positions(self) -> torch.Tensor:
        """(n, palette, 3): every choice cube's centre."""
        return torch.stack([cube.pose.p for cube in self.choices], dim=1)

    def answer_position(self) -> torch.Tensor:
        return self._choice_positions()[torch.arange(self.num_envs, device=self.device),
                                       self.answer_colour]

    def answer_grasped(self) -> torch.Tensor:
        """(n,): whether the gripper holds the answer cube. Contact queries are the costly part
        of a CPU step, so only the colours that are some scene's answer are asked about."""
        grasped = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        for colour in self.answer_colour.unique().tolist():
            grasped |= (self.answer_colour == colour) & self.agent.is_grasping(self.choices[colour])
        return grasped

    def evaluate(self):
        lifts = self._choice_positions()[..., 2] - CUBE_HALF  # (n, palette)
        is_answer = torch.nn.functional.one_hot(self.answer_colour, len(PALETTE)).bool()
        lifted = lifts[is_answer] >= LIFT_SUCCESS
        wrong = ((lifts >= LIFT_WRONG) & ~is_answer).any(dim=1)
        return {
            "success": lifted & ~wrong,
            "fail": wrong,
            "answer_lift": lifts[is_answer],
            "answer_grasped": self.answer_grasped(),
        }

    def _get_obs_extra(self, info: dict):
        obs = {"tcp_pose": self.agent.tcp.pose.raw_pose}
        if "state" in self.obs_mode:
            obs["shown_pos"] = torch.stack([cube.pose.p for cube in self.shown], dim=1).flatten(1)
            obs["choice_pos"] = self._choice_positions().flatten(1)
        if self.oracle:
            obs["oracle"] = torch.nn.functional.one_hot(self.answer_colour, len(PALETTE)).float()
        return obs

    def compute_dense_reward(self, obs, action, info: dict):
        """Staged, in [0, 3]: reach the right cube, grasp it, lift it; 3 on success, 0 once
        failed (the same stages as the SAPIEN task)."""
        target = self.answer_position()
        reach = 1.0 - torch.tanh(5.0 * torch.linalg.norm(self.agent.tcp.pose.p - target, dim=1))
        lift = torch.clamp(info["answer_lift"] / LIFT_SUCCESS, 0.0, 1.0)
        reward = torch.where(info["answer_grasped"], 2.0 + lift, reach)
        reward = torch.where(info["success"], 3.0, reward)
        return torch.where(info["fail"], 0.0, reward)

    def compute_normalized_dense_reward(self, obs, action, info: dict):
        return self.compute_dense_reward(obs, action, info) / 3.0

    # ----------------------------------------------------------------------------------------- #
    # Scripted expert
    # ----------------------------------------------------------------------------------------- #
    def expert_action(self) -> torch.Tensor:
        """The scripted expert's action for every scene at once, from the simulator's state.

        Needs ``control_mode="pd_ee_delta_pos"``. It keeps no state between calls: it reads its
        phase off the scene (choices not there yet: wait; not above the answer: go there; above
        it: descend; at it: close; holding it: lift), so it works under partial resets.
        """
        if self.agent.control_mode != "pd_ee_delta_pos":
            raise ValueError(f"the expert needs control_mode='pd_ee_delta_pos', "
                             f"not {self.agent.control_mode!r}")
        tcp = self.agent.tcp.pose.p
        target = self.answer_position()
        held = self.answer_grasped()
        aligned = torch.linalg.norm((target - tcp)[:, :2], dim=1) < ALIGNED
        at_cube = aligned & (tcp[:, 2] - target[:, 2] < AT_CUBE)
        above = target + torch.tensor([0.0, 0.0, APPROACH_HEIGHT], device=self.device)
        lifted = torch.cat([tcp[:, :2], torch.full_like(tcp[:, 2:], CUBE_HALF + LIFT_PLAN)], 1)
        goal = torch.where(held[:, None], lifted, torch.where(aligned[:, None], target, above))
        # The controller takes a step of up to 10 cm per axis, as an action in [-1, 1].
        move = torch.clamp((goal - tcp) / 0.1, -1.0, 1.0)
        gripper = torch.where(held | at_cube, -1.0, 1.0)[:, None]
        action = torch.cat([move, gripper], dim=1)
        waiting = (self._elapsed_steps < APPEAR_STEP)[:, None]
        return torch.where(waiting, torch.tensor([0.0, 0.0, 0.0, 1.0], device=self.device),
                           action)


class RememberColor3MS3Env(RememberColorMS3Env):
    num_choices = 3


class RememberColor5MS3Env(RememberColorMS3Env):
    num_choices = 5


class RememberColor9MS3Env(RememberColorMS3Env):
    num_choices = 9


for _cls, _choices in ((RememberColor3MS3Env, 3), (RememberColor5MS3Env, 5),
                       (RememberColor9MS3Env, 9)):
    register(f"AEM/RememberColor{_choices}-MS3-v0", _cls, max_episode_steps=130)
