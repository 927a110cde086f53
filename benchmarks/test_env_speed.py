"""Environment steps per second, side by side with ManiSkill3's PickCube-v1 on the CPU backend.

Each benchmark times ONE ``env.step`` per round (median over hundreds of rounds); everything
else happens in the untimed ``setup`` of ``benchmark.pedantic``:

- ``AEM/HandoverBlock-v0``: an expert trajectory (seed 0, 206 steps) is recorded once per
  environment, then replayed cyclically; when it ends the environment is reset (untimed), so
  every timed step is a realistic step of a solved episode (approach, grasp, handover, place).
- ``PickCube-v1``: ``obs_mode="rgb"``, ``sim_backend="cpu"``, ``render_backend="cpu"``,
  ``control_mode="pd_joint_pos"``, 128x128 sensor. Actions are sampled from the action space with
  a fixed seed beforehand (as ManiSkill's own speed benchmarks do), and the environment is reset
  (untimed) every 50 steps, its episode length.

Every environment is warmed up before timing: the first picture in a process costs ~10 s (SAPIEN
builds a BRDF lookup table on the CPU renderer), the first steps pay for lazy allocations.

The process runs pinned to one core (see conftest.py). Run:
    .venv/bin/python -m pytest benchmarks --benchmark-only
or ``.venv/bin/python benchmarks/report.py`` to also write BENCHMARKS.md.
"""

from __future__ import annotations

import os
import time

import gymnasium as gym
import numpy as np
import pytest

import aem_bench  # noqa: F401  (registers AEM/*)
from aem_bench.registration import TASKS
from aem_bench.sim.tabletop import SIM_SUBSTEPS

AEM_TASK = "AEM/HandoverBlock-v0"
REFERENCE = "PickCube-v1"
SEED = 0
WARMUP_STEPS = 20
AEM_ROUNDS = 2 * 206  # two replays of the expert episode
MS_ROUNDS = 200  # ~40 ms a step: about 8 s
MS_EPISODE_STEPS = 50  # PickCube-v1's max_episode_steps


class TrajectoryReplay:
    """Feeds a fixed action sequence to the timed function, resetting (untimed) at its end."""

    def __init__(self, env, actions, episode_steps: int | None = None):
        self.env = env
        self.actions = actions
        self.episode_steps = episode_steps or len(actions)
        self.index = 0
        self.env.reset(seed=SEED)

    def setup(self):
        """benchmark.pedantic's per-round setup: returns the round's (args, kwargs)."""
        if self.index and self.index % self.episode_steps == 0:
            self.env.reset(seed=SEED)
        action = self.actions[self.index % len(self.actions)]
        self.index += 1
        return (action,), {}

    def warm_up(self, steps: int = WARMUP_STEPS) -> None:
        for _ in range(steps):
            (action,), _ = self.setup()
            self.env.step(action)
        self.index = 0
        self.env.reset(seed=SEED)


def record_expert(env) -> list[np.ndarray]:
    """Step the scripted expert once (it reads the state as it goes) and keep its actions."""
    env.reset(seed=SEED)
    actions, info = [], {}
    for action in env.unwrapped.expert():
        actions.append(np.asarray(action, dtype=np.float32))
        _, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    assert info.get("is_success"), "the expert should solve the benchmark episode"
    return actions


def make_aem(camera_size, env_id=AEM_TASK):
    env = gym.make(env_id, camera_size=camera_size)
    obs, _ = env.reset(seed=SEED)  # the first picture in the process builds the BRDF table
    assert obs["rgb"].shape == (*camera_size, 3) and obs["rgb"].dtype == np.uint8
    assert obs["rgb"].std() > 0, "blank camera image"
    return env


@pytest.fixture(scope="module")
def aem_rgb128():
    env = make_aem((128, 128))
    yield env, record_expert(env)
    env.close()


@pytest.fixture(scope="module")
def aem_rgb64():
    env = make_aem((64, 64))
    yield env, record_expert(env)
    env.close()


def make_pickcube(obs_mode: str):
    import mani_skill.envs  # noqa: F401  (registers PickCube-v1; imports torch)

    kwargs = {"obs_mode": obs_mode, "sim_backend": "cpu", "render_backend": "cpu",
                  "control_mode": "pd_joint_pos"}
    if obs_mode == "rgb":
        kwargs["sensor_configs"] = {"width": 128, "height": 128}
    env = gym.make(REFERENCE, **kwargs)
    obs, _ = env.reset(seed=SEED)
    if obs_mode == "rgb":
        rgb = obs["sensor_data"]["base_camera"]["rgb"]
        assert tuple(rgb.shape) == (1, 128, 128, 3), rgb.shape  # (num_envs, H, W, C)
        assert rgb.float().std() > 0, "blank camera image"
    assert env.unwrapped.control_mode == "pd_joint_pos"
    env.action_space.seed(SEED)
    actions = [env.action_space.sample() for _ in range(MS_EPISODE_STEPS)]
    return env, actions


@pytest.fixture(scope="module")
def pickcube_rgb128():
    env, actions = make_pickcube("rgb")
    yield env, actions
    env.close()


@pytest.fixture(scope="module")
def pickcube_state():
    env, actions = make_pickcube("state")
    yield env, actions
    env.close()


def _run(benchmark, env, actions, rounds, target=None, episode_steps=None, **info):
    """Time ``target(action)`` (default ``env.step``) once per round.

    pytest-benchmark's timer measures wall-clock time. The CPU time the whole process spends in
    the same call (all threads: Python, PhysX, lavapipe) is recorded alongside, in
    ``extra_info["cpu_ms_median"]``: pinned to one core, the two agree on an idle machine, and
    CPU time is far less inflated when other processes compete for the core.
    """
    replay = TrajectoryReplay(env, actions, episode_steps)
    step = target or env.step
    cpu_times = []

    def timed(action):
        start = time.process_time()
        step(action)
        cpu_times.append(time.process_time() - start)

    replay.warm_up()
    cpu_times.clear()
    benchmark.extra_info.update(info)
    benchmark.pedantic(timed, setup=replay.setup, rounds=rounds, iterations=1)
    benchmark.extra_info["steps_per_s_median"] = 1.0 / benchmark.stats.stats.median
    benchmark.extra_info["cpu_ms_median"] = 1e3 * float(np.median(cpu_times))
    benchmark.extra_info["loadavg_1min"] = os.getloadavg()[0]


@pytest.mark.benchmark(group="env.step")
def test_aem_handover_rgb128(benchmark, aem_rgb128):
    env, actions = aem_rgb128
    _run(benchmark, env, actions, AEM_ROUNDS, env_id=AEM_TASK, camera="128x128 rgb",
         timed="env.step")


@pytest.mark.benchmark(group="env.step")
def test_aem_handover_rgb64(benchmark, aem_rgb64):
    env, actions = aem_rgb64
    _run(benchmark, env, actions, AEM_ROUNDS, env_id=AEM_TASK, camera="64x64 rgb",
         timed="env.step")


@pytest.mark.benchmark(group="env.step")
def test_aem_handover_physics_only(benchmark, aem_rgb128):
    """The physics part of TableTopEnv.step alone: drive targets + 5 PhysX substeps (no
    picture, no success check, no reward), on the same expert trajectory."""
    env, actions = aem_rgb128
    base = env.unwrapped

    def physics_step(action):
        base.arms["left"].set_target(action[:8])
        base.arms["right"].set_target(action[8:])
        for _ in range(SIM_SUBSTEPS):
            base.scene.step()

    _run(benchmark, env, actions, AEM_ROUNDS, target=physics_step, env_id=AEM_TASK,
         camera="none", timed=f"set_target x2 + scene.step() x{SIM_SUBSTEPS}")


@pytest.mark.benchmark(group="env.step")
def test_maniskill_pickcube_rgb128(benchmark, pickcube_rgb128):
    env, actions = pickcube_rgb128
    _run(benchmark, env, actions, MS_ROUNDS, episode_steps=MS_EPISODE_STEPS, env_id=REFERENCE,
         camera="128x128 rgb", timed="env.step")


@pytest.mark.benchmark(group="env.step")
def test_maniskill_pickcube_state(benchmark, pickcube_state):
    """Reference without a camera: what ManiSkill's step costs besides rendering."""
    env, actions = pickcube_state
    _run(benchmark, env, actions, MS_ROUNDS, episode_steps=MS_EPISODE_STEPS, env_id=REFERENCE,
         camera="none (obs_mode=state)", timed="env.step")


MS3_TASK = "AEM/RememberColor3-MS3-v0"


def make_remember_color_ms3(obs_mode: str):
    """The ManiSkill3 port of RememberColor on the CPU backend (one scene), with its batched
    expert's actions recorded once (seed 0), to be replayed like the other AEM tasks."""
    env = gym.make(MS3_TASK, obs_mode=obs_mode, control_mode="pd_ee_delta_pos",
                   sim_backend="cpu", render_backend="cpu")
    env.reset(seed=SEED)
    actions, info = [], {}
    while not info.get("success", False):
        action = env.unwrapped.expert_action()
        actions.append(action)
        *_, truncated, info = env.step(action)
        assert not truncated.any(), "the expert should solve the benchmark episode"
    return env, actions


@pytest.mark.benchmark(group="env.step")
@pytest.mark.parametrize("obs_mode", ["state", "rgb"])
def test_remember_color_ms3(benchmark, obs_mode):
    env, actions = make_remember_color_ms3(obs_mode)
    try:
        _run(benchmark, env, actions, 2 * len(actions), env_id=MS3_TASK,
             camera="128x128 rgb" if obs_mode == "rgb" else "none (obs_mode=state)",
             timed="env.step")
    finally:
        env.close()


@pytest.mark.benchmark(group="interleaved")
def test_interleaved_aem_vs_pickcube(benchmark, aem_rgb128, pickcube_rgb128):
    """The ratio with the least exposure to the machine's load: each round steps AEM (RGB 128)
    then PickCube-v1 (RGB 128), timing each call separately, so both see the same moment's load.

    The round time pytest-benchmark reports is the sum of the two; the figures that matter are in
    ``extra_info``: each environment's median, and the median over rounds of the per-round ratio
    PickCube time / AEM time.
    """
    aem_env, aem_actions = aem_rgb128
    ms_env, ms_actions = pickcube_rgb128
    aem = TrajectoryReplay(aem_env, aem_actions)
    ms = TrajectoryReplay(ms_env, ms_actions, MS_EPISODE_STEPS)
    aem.warm_up()
    ms.warm_up()
    aem_times, ms_times = [], []

    def setup():
        (aem_action,), _ = aem.setup()
        (ms_action,), _ = ms.setup()
        return (aem_action, ms_action), {}

    def both(aem_action, ms_action):
        start = time.perf_counter()
        aem_env.step(aem_action)
        middle = time.perf_counter()
        ms_env.step(ms_action)
        aem_times.append(middle - start)
        ms_times.append(time.perf_counter() - middle)

    benchmark.pedantic(both, setup=setup, rounds=MS_ROUNDS, iterations=1)
    aem_ms, ms_ms = 1e3 * np.asarray(aem_times), 1e3 * np.asarray(ms_times)
    benchmark.extra_info.update(
        env_id=f"{AEM_TASK} vs {REFERENCE}", camera="128x128 rgb", timed="env.step, alternately",
        aem_ms_median=float(np.median(aem_ms)), pickcube_ms_median=float(np.median(ms_ms)),
        ratio_of_medians=float(np.median(ms_ms) / np.median(aem_ms)),
        ratio_median_per_round=float(np.median(ms_ms / aem_ms)),
        loadavg_1min=os.getloadavg()[0])


# Every task with the default camera, plus the heaviest scene variant of one task (clutter adds
# up to ten bodies to simulate and draw).
PER_TASK_IDS = sorted(spec.env_id for spec in TASKS.values() if spec.scene == "clean") + [
    "AEM/HandoverBlock-Cluttered-v0", "AEM/HandoverBlock-Randomized-v0"]


@pytest.mark.benchmark(group="per task")
@pytest.mark.parametrize("env_id", PER_TASK_IDS)
def test_task_step_rgb128(benchmark, env_id):
    """``env.step`` of each task's own expert episode (seed 0), default camera (RGB 128)."""
    env = make_aem((128, 128), env_id)
    try:
        actions = record_expert(env)
        _run(benchmark, env, actions, max(2 * len(actions), 200), env_id=env_id,
             camera="128x128 rgb", timed="env.step")
    finally:
        env.close()
