"""The environment contract of AEM/HandoverBlock-v0."""

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from aem_bench.expert import run_expert
from aem_bench.registration import get_task

TASK = "AEM/HandoverBlock-v0"


def test_registered_with_metadata():
    spec = gym.spec(TASK)
    assert spec.max_episode_steps == 400
    task = get_task(TASK)
    assert task.arms == 2 and "handover" in task.skills and task.memory is None


def test_make_without_import_uses_module_prefix():
    code = (
        "import gymnasium as gym\n"
        f"env = gym.make('aem_bench:{TASK}')\n"
        "print(env.observation_space['rgb'].shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert "(128, 128, 3)" in out.stdout


def test_passes_gymnasium_env_checker(handover_env):
    check_env(handover_env.unwrapped, skip_render_check=False)


def test_spaces(handover_env):
    obs, info = handover_env.reset(seed=0)
    assert obs["rgb"].shape == (128, 128, 3) and obs["rgb"].dtype == np.uint8
    assert obs["qpos"].shape == (16,) and obs["qpos"].dtype == np.float32
    assert handover_env.observation_space.contains(obs)
    space = handover_env.action_space
    assert space.shape == (16,) and space.dtype == np.float32
    # Real Panda limits: joint 4 is always negative, fingers travel 0..4 cm.
    assert space.high[3] < 0 and space.low[7] == 0 and space.high[7] == pytest.approx(0.04)
    assert info["is_success"] is False
    assert handover_env.metadata["render_fps"] == 20
    # The picture is a real rendering: the scene is not a flat colour.
    assert obs["rgb"].std() > 10


def test_render_returns_the_head_camera(handover_env):
    obs, _ = handover_env.reset(seed=1)
    frame = handover_env.render()
    assert np.array_equal(frame, obs["rgb"])


def test_wrist_cameras_and_resolution():
    env = gym.make(TASK, camera_size=(64, 96), wrist_cameras=True)
    obs, _ = env.reset(seed=0)
    for key in ("rgb", "rgb_left_wrist", "rgb_right_wrist"):
        assert obs[key].shape == (64, 96, 3)
    assert env.observation_space.contains(obs)
    env.close()


def test_same_seed_same_first_observation_and_trajectory(handover_env):
    def rollout(seed, steps=40):
        obs, _ = handover_env.reset(seed=seed)
        frames, qpos = [obs["rgb"]], [obs["qpos"]]
        for action, _ in zip(handover_env.unwrapped.expert(), range(steps)):
            obs, *_ = handover_env.step(action)
            frames.append(obs["rgb"])
            qpos.append(obs["qpos"])
        return np.stack(frames), np.stack(qpos)

    first = rollout(7)
    other = rollout(8)
    again = rollout(7)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not np.array_equal(first[0][0], other[0][0])  # another seed, another scene


@pytest.mark.parametrize(
    "action, message",
    [
        (np.full(16, np.nan, dtype=np.float32), "NaN"),
        (np.zeros(15, dtype=np.float32), "shape"),
        (np.zeros((2, 16), dtype=np.float32), "shape"),
        (np.array(["a"] * 16), "dtype"),
        (np.zeros(16, dtype=bool), "dtype"),
    ],
)
def test_bad_actions_raise_value_error(handover_env, action, message):
    handover_env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        handover_env.step(action)
    # The environment is still usable after the error.
    handover_env.step(handover_env.unwrapped.qpos)


@pytest.mark.parametrize("command", [100.0, -100.0])
def test_out_of_range_actions_are_clipped_to_joint_limits(handover_env, command):
    handover_env.reset(seed=0)
    for _ in range(5):
        obs, *_ = handover_env.step(np.full(16, command, dtype=np.float32))
    # Read from the articulations, not the observation (which is clipped to the same bounds): the
    # drives aim at the URDF's limits, and the joints stay inside them.
    for side, observed in zip(("left", "right"), np.split(obs["qpos"], 2)):
        robot = handover_env.unwrapped.arms[side].robot
        limits = robot.get_qlimits()
        bound = limits[:, 1] if command > 0 else limits[:, 0]
        targets = [float(joint.get_drive_target()[0]) for joint in robot.get_active_joints()]
        np.testing.assert_allclose(targets, bound, atol=1e-6)
        raw = robot.get_qpos()
        assert np.all(raw >= limits[:, 0] - 1e-4) and np.all(raw <= limits[:, 1] + 1e-4)
        # The observation reports the joints as they are: 7 arm joints, the fingers' mean.
        np.testing.assert_allclose(observed, np.append(raw[:7], raw[7:].mean()), atol=1e-6)


def test_truncates_at_step_limit():
    env = gym.make(TASK, max_episode_steps=3)
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        obs, reward, terminated, truncated, info = env.step(obs["qpos"])
    assert truncated and not terminated and not info["is_success"]
    assert 0.0 <= reward <= 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_expert_solves(handover_env, seed):
    result = run_expert(handover_env, seed)
    assert result.success, result.failure
    assert result.steps < gym.spec(TASK).max_episode_steps


def test_dense_reward_is_staged(handover_env):
    handover_env.reset(seed=4)
    rewards = []
    for action in handover_env.unwrapped.expert():
        _, reward, terminated, _, _ = handover_env.step(action)
        rewards.append(reward)
        if terminated:
            break
    assert terminated and rewards[-1] == 1.0
    assert all(0.0 <= r <= 1.0 for r in rewards)
    # Progress is rewarded: each quarter of the episode ends higher than the one before.
    quarters = np.array_split(np.array(rewards), 4)
    assert [q[-1] for q in quarters] == sorted(q[-1] for q in quarters)


@pytest.mark.slow
def test_shares_the_render_device_with_maniskill():
    # SAPIEN allows one render device per process; ManiSkill3 built after us must reuse ours.
    code = (
        "import gymnasium as gym, aem_bench, mani_skill.envs\n"
        f"ours = gym.make('{TASK}', camera_size=(32, 32)); ours.reset(seed=0)\n"
        "theirs = gym.make('PickCube-v1', obs_mode='rgb', sim_backend='cpu', "
        "render_backend='cpu', sensor_configs=dict(width=32, height=32))\n"
        "obs, _ = theirs.reset(seed=0)\n"
        "print('ok', tuple(obs['sensor_data']['base_camera']['rgb'].shape))\n"
        # ManiSkill sets process-wide camera settings (shader, picture format) for its own
        # cameras; an environment of ours made afterwards must still see the same picture.
        f"again = gym.make('{TASK}', camera_size=(32, 32))\n"
        "same = (again.reset(seed=0)[0]['rgb'] == ours.reset(seed=0)[0]['rgb']).all()\n"
        "print('same picture', bool(same))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ok (1, 32, 32, 3)" in out.stdout
    assert "same picture True" in out.stdout


def test_success_needs_the_right_gripper_open():
    # Near miss: the bar lies on the pad, as after a successful handover, but the right gripper
    # is closed again. Every other clause of the success check holds; this one alone must fail it.
    env = gym.make(TASK, obs_mode="state")
    try:
        result = run_expert(env, seed=0)
        assert result.success, result.failure
        task = env.unwrapped
        right = task.arms["right"]
        assert task.evaluate()["success"]
        closed = right.qpos.copy()
        closed[-1] = right.low[-1]  # fingers shut; the arm where it is
        right.reset(closed)
        info = task.evaluate()
        assert info["bar_on_pad_xy"] and info["bar_resting"], "the bar must not have moved"
        assert not info["right_gripper_open"]
        assert not info["success"]
    finally:
        env.close()
