"""The base of every task: two Pandas facing each other across a table, cameras, the step loop.

A task subclasses :class:`TableTopEnv` and fills in, as in ManiSkill3:

- ``_load_scene()``: build the task's objects once per environment;
- ``_initialize_episode(rng)``: place them for a new episode (all randomness from ``rng``);
- ``evaluate() -> dict``: geometric checks, with ``"success"`` (and ``"fail"`` where a wrong
  move ends the episode for good);
- ``compute_dense_reward(info) -> float``: shaped reward in [0, 1];
- ``expert()``: a generator of actions that solves the episode from the current state.

Memory tasks (where the current frame does not tell what to do) also set ``oracle_size`` and
fill in ``oracle()``: what the hidden fact says to do next (the slot to lift, the presses left),
observed under ``obs_mode="rgb+oracle"`` (a control that removes the need for memory, as
MIKASA-Robo's oracle state mode). They also declare ``hidden_fact()`` (the fact to remember, as
a class index) and ``fact_size``; ``fact()``, observed beside the oracle, is that fact alone
(one-hot: the colour shown, not where the cube of that colour stands), the control for tasks
where acting on a remembered fact is itself hard to learn. Scene changes in
time, such as hiding a cue, go in ``_after_step()``, which runs after the physics of every step.

Objects made with :meth:`add_box`, :meth:`add_cylinder` (and their visual-only twins) are task
objects: the scene variants keep clutter off their footprints. A task with other footprints (an
articulation, a goal region with no marker) returns them from :meth:`keep_clear`.

Scene variants (``scene=``), as RoboTwin 2.0's clean and randomized settings:

- ``"clean"``: the task's objects on a plain table;
- ``"cluttered"``: plus up to ten distractors that keep off the task's footprints;
- ``"randomized"``: clutter plus random table, floor and lighting colours, table height +-3 cm
  (the arms move instead, so that task code keeps the table top at z = 0) and head-camera jitter.

The task places its objects first, then the variant draws its own randomness, so one seed gives
the same task layout in every variant: results across variants are paired.

Conventions: world x points away from the head camera, y to the left, z up; the table top is
at z = 0. The left arm stands at y = +0.6 facing -y, the right arm at y = -0.6 facing +y.
Actions are absolute joint-position targets ``[left q1..q7, left finger, right q1..q7, right
finger]`` (16 numbers, clipped to the joint limits); ``qpos`` reads back the same layout.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import gymnasium as gym
import numpy as np
import sapien

from aem_bench.sim.clutter import SceneRandomizer
from aem_bench.sim.panda import GRIPPER_OPEN, HOME_QPOS, PandaArm
from aem_bench.sim.poses import look_at, yaw_quat

CONTROL_FREQ = 20  # Hz, as ManiSkill3's default
SIM_SUBSTEPS = 5  # physics at 100 Hz
ARM_BASE_Y = 0.6
TABLE_HALF_SIZE = (0.4, 0.75, 0.02)
HEAD_CAMERA_EYE = (-0.8, 0.0, 0.75)
HEAD_CAMERA_TARGET = (0.05, 0.0, 0.12)
HEAD_CAMERA_FOVY = np.deg2rad(52)
MIN_CAMERA_SIDE = 16  # pixels
SCENES = ("clean", "cluttered", "randomized")
OBS_MODES = ("rgb", "state", "rgb+oracle")

_render_device: sapien.Device | None = None


# SAPIEN's "minimal" shader, less its image-based lighting: per pixel it samples an environment
# cube map three times (diffuse, specular, background), which on a CPU renderer cost about 40% of
# an RGB step. Our scenes set no environment map, so those samples add nothing: the pictures are
# the same, pixel for pixel (tests/test_rendering.py).
_SHADER_PATCHES = {
    "gbuffer.frag": (("  color += diffuseIBL(diffuseAlbedo, wnormal);\n"
                      "  color += specularIBL(fresnel, roughness,\n"
                      "                       wnormal,\n"
                      "                       mat3(cameraBuffer.viewMatrixInverse) * camDir);\n"),
                     ""),
    "composite0.frag": ("  outColor.rgb = mix(bg, color.rgb, color.a);", "  outColor.rgb = color.rgb;"),
}


def camera_shader_dir() -> str:
    """A copy of SAPIEN's "minimal" shader pack without image-based lighting, written once per
    SAPIEN installation into the cache. ``AEM_CAMERA_SHADER`` names another shader pack
    (``minimal``: SAPIEN's own); if SAPIEN's source has changed so that the copy cannot be
    patched, that is an error until the environment variable chooses a pack."""
    if os.environ.get("AEM_CAMERA_SHADER"):
        return os.environ["AEM_CAMERA_SHADER"]
    return _shader_pack_without_ibl()


@functools.cache
def _shader_pack_without_ibl() -> str:
    source = Path(sapien.__file__).resolve().parent / "vulkan_shader"
    tag = hashlib.sha1(str(source).encode()).hexdigest()[:12]
    out = (Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "aem_bench"
           / f"shaders_{tag}")
    if (out / "minimal_no_ibl").is_dir():
        return str(out / "minimal_no_ibl")
    texts = {name: (source / "minimal" / name).read_text() for name in _SHADER_PATCHES}
    if missing := [name for name, (old, _) in _SHADER_PATCHES.items() if old not in texts[name]]:
        # The stock shader renders other pixels only if a scene sets an environment map, but it is
        # slower and untested here: rendering with it must be the user's choice.
        raise RuntimeError(
            f"cannot build the camera shader minimal_no_ibl: SAPIEN's minimal shader in "
            f"{source / 'minimal'} no longer contains the image-based lighting code to remove "
            f"(in {', '.join(missing)}); set AEM_CAMERA_SHADER=minimal to render with SAPIEN's "
            f"stock shader instead (slower on a CPU renderer)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent))
    shutil.copytree(source / "common", staging / "common")
    shutil.copytree(source / "minimal", staging / "minimal_no_ibl")
    for name, (old, new) in _SHADER_PATCHES.items():
        (staging / "minimal_no_ibl" / name).write_text(texts[name].replace(old, new))
    try:
        os.replace(staging, out)  # atomic: parallel workers may build the same pack
    except OSError:  # another process got there first
        shutil.rmtree(staging, ignore_errors=True)
    return str(out / "minimal_no_ibl")


def render_device() -> sapien.Device:
    """The device every scene of this process renders on, chosen once.

    SAPIEN renders on one device per process and refuses a second one. ManiSkill3 asks for
    ``"cuda"`` or ``"cpu"``, while a bare ``sapien.Scene()`` names the same lavapipe device
    ``"pci:..."``; asking by the names ManiSkill uses lets both live in one process, in either
    order. ``AEM_RENDER_DEVICE`` overrides the choice.
    """
    global _render_device
    if _render_device is None:
        name = os.environ.get("AEM_RENDER_DEVICE")
        if name:
            _render_device = sapien.Device(name)
        else:
            try:
                _render_device = sapien.Device("cuda")
            except RuntimeError:  # no CUDA device: Mesa lavapipe on the CPU
                _render_device = sapien.Device("cpu")
    return _render_device


class TableTopEnv(gym.Env):
    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "render_fps": CONTROL_FREQ}
    obs_modes: ClassVar[tuple[str, ...]] = OBS_MODES
    oracle_size: ClassVar[int] = 0  # > 0 for memory tasks: the length of ``oracle()``
    fact_size: ClassVar[int] = 0  # > 0 for memory tasks: the length of ``fact()``
    # What `aem-bench probe` asks of a memory when the hidden fact at one moment is not what the
    # memory must hold (once the phase is known, the layout may give the fact away): a short
    # name and a sentence for a label read at several moments of each episode and pooled
    # (``pooled_probe_rows()``). None: the probe reads ``hidden_fact()`` at the decision step.
    pooled_probe: ClassVar[tuple[str, str] | None] = None

    def __init__(
        self,
        render_mode: str | None = None,
        camera_size: tuple[int, int] = (128, 128),
        wrist_cameras: bool = False,
        scene: str = "clean",
        obs_mode: str = "rgb",
    ):
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, "
                             f"got {render_mode!r}")
        if scene not in SCENES:
            raise ValueError(f"scene must be one of {SCENES}, got {scene!r}")
        if obs_mode not in self.obs_modes:
            raise ValueError(f"obs_mode must be one of {self.obs_modes}, got {obs_mode!r}")
        if obs_mode == "rgb+oracle" and (self.oracle_size == 0 or self.fact_size == 0):
            raise ValueError(f"obs_mode 'rgb+oracle' needs a memory task; {type(self).__name__} "
                             f"has nothing hidden to reveal")
        height, width = (int(v) for v in camera_size)
        if min(height, width) < MIN_CAMERA_SIDE:
            raise ValueError(f"camera_size must be at least ({MIN_CAMERA_SIDE}, "
                             f"{MIN_CAMERA_SIDE}), got {camera_size!r}")
        self.render_mode = render_mode
        self.camera_size = (height, width)
        self.wrist_cameras = wrist_cameras
        self.scene_variant = scene
        self.obs_mode = obs_mode
        self.head_camera_eye, self.head_camera_target = HEAD_CAMERA_EYE, HEAD_CAMERA_TARGET
        self._task_objects: list[tuple[sapien.Entity, float]] = []  # entity, footprint radius

        self.scene = sapien.Scene([sapien.physx.PhysxCpuSystem(),
                                   sapien.render.RenderSystem(render_device())])
        self.scene.set_timestep(1.0 / (CONTROL_FREQ * SIM_SUBSTEPS))
        self._build_room()
        self.arms = {
            "left": PandaArm(self.scene, sapien.Pose([0, ARM_BASE_Y, 0], yaw_quat(-np.pi / 2)),
                             "left"),
            "right": PandaArm(self.scene, sapien.Pose([0, -ARM_BASE_Y, 0], yaw_quat(np.pi / 2)),
                              "right"),
        }
        self.cameras = {"rgb": self._add_camera("head", look_at(HEAD_CAMERA_EYE,
                                                                HEAD_CAMERA_TARGET))}
        if wrist_cameras:
            for side, arm in self.arms.items():
                # Beside the hand, looking along the fingers (the hand's z axis).
                camera = self._add_camera(f"{side}_wrist", look_at((-0.06, 0, 0.02),
                                                                  (-0.03, 0, 0.2)),
                                          mount=arm.links["panda_hand"])
                self.cameras[f"rgb_{side}_wrist"] = camera
        self._load_scene()
        self._randomizer = (None if scene == "clean" else
                            SceneRandomizer(self, randomize_appearance=scene == "randomized"))

        low = np.concatenate([self.arms["left"].low, self.arms["right"].low])
        high = np.concatenate([self.arms["left"].high, self.arms["right"].high])
        self.action_space = gym.spaces.Box(low, high, dtype=np.float32)
        self.observation_space = gym.spaces.Dict(self._observation_spaces(low, high))
        self._last_obs: dict | None = None
        self._finger_contact_cache: dict | None = None
        self.elapsed_steps = 0

    # --- scene -------------------------------------------------------------------------------
    def _build_room(self) -> None:
        self.scene.set_ambient_light([0.45, 0.45, 0.45])
        self.sun = self.scene.add_directional_light([0.3, 0.2, -1.0], [0.75, 0.75, 0.75])
        self.table = self.add_box("table", TABLE_HALF_SIZE, (0.62, 0.5, 0.38),
                                  pose=sapien.Pose([0, 0, -TABLE_HALF_SIZE[2]]), static=True,
                                  task_object=False)
        # A floor box rather than scene.add_ground(): the ground plane costs ~1 ms per frame.
        self.floor_top = -0.75
        self.floor = self.add_box("floor", (3.0, 3.0, 0.01), (0.3, 0.32, 0.35),
                                  pose=sapien.Pose([0, 0, self.floor_top - 0.01]), static=True,
                                  task_object=False)
        # The background behind the table, seen over the robots' shoulders.
        self.wall = self.add_box("wall", (0.01, 3.0, 1.5), (0.55, 0.58, 0.6),
                                 pose=sapien.Pose([1.6, 0, self.floor_top + 1.5]),
                                 visual_only=True, task_object=False)

    # --- building objects --------------------------------------------------------------------
    # Objects are dynamic by default; ``static=True`` fixes them in place and ``visual_only=True``
    # makes markers that are seen but never touched. Task objects are kept clear of clutter.
    def add_box(self, name, half_size, colour, pose=None, static=False, density=500.0,
                friction=1.0, visual_only=False, task_object=True) -> sapien.Entity:
        builder = self.scene.create_actor_builder()
        if not visual_only:
            material = sapien.physx.PhysxMaterial(friction, friction, 0.0)
            builder.add_box_collision(half_size=half_size, material=material, density=density)
        builder.add_box_visual(half_size=half_size, material=colour)
        radius = float(np.hypot(half_size[0], half_size[1]))
        return self._build(builder, name, pose, static, visual_only, task_object, radius)

    def add_cylinder(self, name, radius, half_height, colour, pose=None, static=False,
                     density=500.0, friction=1.0, visual_only=False,
                     task_object=True) -> sapien.Entity:
        """An upright cylinder (SAPIEN's cylinders lie along x; this one stands along z)."""
        builder = self.scene.create_actor_builder()
        upright = sapien.Pose(q=[np.sqrt(0.5), 0.0, np.sqrt(0.5), 0.0])
        if not visual_only:
            material = sapien.physx.PhysxMaterial(friction, friction, 0.0)
            builder.add_cylinder_collision(upright, radius, half_height, material=material,
                                           density=density)
        builder.add_cylinder_visual(upright, radius, half_height, material=colour)
        return self._build(builder, name, pose, static, visual_only, task_object, float(radius))

    def add_visual_box(self, name, half_size, colour) -> sapien.Entity:
        """A marker that is seen but not touched (target pads)."""
        return self.add_box(name, half_size, colour, visual_only=True)

    def _build(self, builder, name, pose, static, visual_only, task_object, radius):
        if static:
            actor = builder.build_static(name=name)
        elif visual_only:
            actor = builder.build_kinematic(name=name)
        else:
            actor = builder.build(name=name)
        if pose is not None:
            actor.set_pose(pose)
        if task_object:
            self.track(actor, radius)
        return actor

    def track(self, entity: sapien.Entity, radius: float) -> None:
        """Declare ``entity`` a task object with a footprint of ``radius`` around its centre
        (for objects a task builds itself, e.g. composite bodies)."""
        self._task_objects.append((entity, float(radius)))

    def keep_clear(self) -> list[tuple[np.ndarray, float]]:
        """Extra table regions (centre xy, radius) that clutter must avoid; override as needed."""
        return []

    def footprints(self) -> list[tuple[np.ndarray, float]]:
        """Where the task's objects stand now, as (centre xy, radius) circles."""
        return [(entity.pose.p[:2], radius) for entity, radius in self._task_objects
                ] + list(self.keep_clear())

    @staticmethod
    def set_actor_pose(entity: sapien.Entity, pose: sapien.Pose) -> None:
        """Teleport an actor and stop it (a reset must not inherit last episode's velocity)."""
        entity.set_pose(pose)
        body = entity.find_component_by_type(sapien.physx.PhysxRigidDynamicComponent)
        if body is not None and not body.kinematic:
            body.set_linear_velocity([0.0, 0.0, 0.0])
            body.set_angular_velocity([0.0, 0.0, 0.0])

    def _add_camera(self, name, pose, mount=None):
        # The shader and the picture format are process-wide settings that SAPIEN reads when a
        # camera is made, and ManiSkill3 sets them for its own cameras: set ours every time.
        # Colour as uint8: the same pixels as rounding SAPIEN's floats, and no conversion.
        sapien.render.set_camera_shader_dir(camera_shader_dir())
        sapien.render.set_picture_format("Color", "r8g8b8a8unorm")
        height, width = self.camera_size
        if mount is None:
            camera = self.scene.add_camera(name, width, height, HEAD_CAMERA_FOVY, 0.01, 10.0)
            camera.set_local_pose(pose)
        else:
            camera = self.scene.add_mounted_camera(name, mount.entity, pose, width, height,
                                                   np.deg2rad(75), 0.01, 10.0)
        return camera

    # --- task hooks --------------------------------------------------------------------------
    def _load_scene(self) -> None:
        raise NotImplementedError

    def _initialize_episode(self, rng: np.random.Generator) -> None:
        raise NotImplementedError

    def evaluate(self) -> dict:
        raise NotImplementedError

    def compute_dense_reward(self, info: dict) -> float:
        raise NotImplementedError

    def expert(self) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def oracle(self) -> np.ndarray:
        """Memory tasks: what the fact the frame may no longer show says to do next,
        ``(oracle_size,)`` float32."""
        raise NotImplementedError

    def hidden_fact(self) -> int:
        """Memory tasks: the fact to remember, as a class index in ``range(fact_size)``."""
        raise NotImplementedError

    def fact(self) -> np.ndarray:
        """Memory tasks: the fact alone, ``(fact_size,)`` float32; one-hot ``hidden_fact()``
        unless the task says otherwise."""
        code = np.zeros(self.fact_size, dtype=np.float32)
        code[self.hidden_fact()] = 1.0
        return code

    def pooled_probe_rows(self) -> list[tuple[int, int]]:
        """Tasks with a ``pooled_probe``, after an expert episode: ``(step, label)`` for each
        moment of it that the probe reads."""
        raise NotImplementedError

    def _after_step(self) -> None:
        """Runs after each step's physics, before the observation: timed scene changes."""

    # --- gymnasium API -----------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        for arm in self.arms.values():
            arm.reset(np.append(HOME_QPOS, GRIPPER_OPEN))
        self._initialize_episode(self.np_random)
        if self._randomizer is not None:
            self._randomizer.apply(self.np_random)
        self._forget_physics_history()
        self._finger_contact_cache = None
        self.elapsed_steps = 0
        obs = self._get_obs()
        info = self.evaluate()
        info["is_success"] = bool(info["success"])
        return obs, info

    def _forget_physics_history(self) -> None:
        """Make the next steps depend on this reset only, not on the episodes before it.

        PhysX keeps, per pair of touching bodies, contact caches, and wakes sleeping bodies
        when a pair from the last episode comes apart; either made the first steps after a
        reset differ in the last bits with what happened before (and now and then a pixel).
        Taking the free bodies out of the scene and back in, in a fixed order, starts their
        pairs afresh; they then start at rest, asleep until something touches them.
        """
        bodies = [body for body in self.scene.physx_system.rigid_dynamic_components
                  if not body.kinematic]
        entities = [body.entity for body in bodies]
        for entity in entities:
            self.scene.remove_entity(entity)
        for entity in entities:
            self.scene.add_entity(entity)
        for body in bodies:
            body.put_to_sleep()

    def step(self, action):
        action = self._check_action(action)
        self.arms["left"].set_target(action[:8])
        self.arms["right"].set_target(action[8:])
        for _ in range(SIM_SUBSTEPS):
            self.scene.step()
        self._finger_contact_cache = None
        self.elapsed_steps += 1
        self._after_step()
        obs = self._get_obs()
        info = self.evaluate()
        info["is_success"] = bool(info["success"])
        reward = float(self.compute_dense_reward(info))
        # A task may also end an episode as failed for good ("fail": the wrong cup was lifted).
        terminated = info["is_success"] or bool(info.get("fail", False))
        return obs, reward, terminated, False, info

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        if self._last_obs is None:
            return self._take_pictures()["rgb"]
        return self._last_obs["rgb"]

    def close(self) -> None:
        self.scene = None  # frees the physics and render scenes

    # --- helpers -----------------------------------------------------------------------------
    def _check_action(self, action) -> np.ndarray:
        array = np.asarray(action)
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise ValueError(f"action must be a float array, got dtype {array.dtype}")
        if array.shape != self.action_space.shape:
            raise ValueError(f"action must have shape {self.action_space.shape} "
                             f"(left arm 7 + gripper 1, right arm 7 + gripper 1), "
                             f"got {array.shape}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"action contains NaN or inf at indices "
                             f"{np.flatnonzero(~np.isfinite(array)).tolist()}")
        return np.clip(array.astype(np.float32), self.action_space.low, self.action_space.high)

    def _take_pictures(self) -> dict[str, np.ndarray]:
        self.scene.update_render()
        pictures = {}
        for key, camera in self.cameras.items():
            camera.take_picture()
            pictures[key] = np.ascontiguousarray(camera.get_picture("Color")[..., :3])
        return pictures

    def _observation_spaces(self, low, high) -> dict[str, gym.Space]:
        spaces: dict[str, gym.Space] = {"qpos": gym.spaces.Box(low, high, dtype=np.float32)}
        if self.obs_mode == "state":
            # Position and quaternion of every task object: for experts, RL and debugging.
            size = 7 * len(self._task_objects)
            spaces["state"] = gym.spaces.Box(-np.inf, np.inf, (size,), dtype=np.float32)
        else:
            height, width = self.camera_size
            spaces.update({key: gym.spaces.Box(0, 255, (height, width, 3), dtype=np.uint8)
                           for key in self.cameras})
        if self.obs_mode == "rgb+oracle":
            spaces["oracle"] = gym.spaces.Box(-np.inf, np.inf, (self.oracle_size,),
                                              dtype=np.float32)
            spaces["fact"] = gym.spaces.Box(0.0, 1.0, (self.fact_size,), dtype=np.float32)
        return spaces

    def _get_obs(self) -> dict[str, np.ndarray]:
        qpos = np.concatenate([self.arms["left"].qpos, self.arms["right"].qpos])
        if self.obs_mode == "state":
            obs = {"state": self.object_state().astype(np.float32)}
            self._last_obs = None  # render() takes its own picture
        else:
            obs = self._take_pictures()
            self._last_obs = obs
        obs["qpos"] = np.clip(qpos, self.action_space.low, self.action_space.high)
        if self.obs_mode == "rgb+oracle":
            obs["oracle"] = np.asarray(self.oracle(), dtype=np.float32)
            obs["fact"] = np.asarray(self.fact(), dtype=np.float32)
        return obs

    @property
    def qpos(self) -> np.ndarray:
        return np.concatenate([self.arms["left"].qpos, self.arms["right"].qpos])

    def object_state(self) -> np.ndarray:
        """Position and quaternion of every task object, in the order they were made: the
        ``state`` observation, which includes objects the cameras cannot see (a hidden cue under
        the table, a ball under a cup) and no colours."""
        return np.concatenate([np.concatenate([entity.pose.p, entity.pose.q])
                               for entity, _ in self._task_objects])

    def grasping_arms(self, actor: sapien.Entity) -> set[str]:
        """Names of the arms whose two fingers both push on ``actor``."""
        touching = self._finger_contacts().get(actor, {})
        return {side for side, fingers in touching.items() if len(fingers) == 2}

    def _finger_contacts(self, min_impulse: float = 1e-4) -> dict:
        """``{entity: {side: {finger names}}}`` of the fingers pushing on each entity now.

        One pass over the contacts per simulation state, however many checks ask: with clutter
        there are hundreds of contact points, and tasks ask about several objects a step.
        """
        if self._finger_contact_cache is not None:
            return self._finger_contact_cache
        finger_owner = {finger.entity: (side, finger.name)
                        for side, arm in self.arms.items() for finger in arm.fingers}
        touching: dict = {}
        for contact in self.scene.get_contacts():
            a, b = contact.bodies[0].entity, contact.bodies[1].entity
            finger, other = (a, b) if a in finger_owner else (b, a) if b in finger_owner else (
                None, None)
            if finger is None:
                continue
            if sum(np.linalg.norm(point.impulse) for point in contact.points) > min_impulse:
                side, name = finger_owner[finger]
                touching.setdefault(other, {}).setdefault(side, set()).add(name)
        self._finger_contact_cache = touching
        return touching
