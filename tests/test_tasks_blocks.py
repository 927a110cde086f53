"""The block tasks: stacking two or three cubes, ranking cubes by colour or by size."""

import gymnasium as gym
import numpy as np
import pytest
import sapien

from aem_bench.registration import get_task
from aem_bench.sim.poses import yaw_quat

STACK_TWO, STACK_THREE = "AEM/StackBlocksTwo-v0", "AEM/StackBlocksThree-v0"
RANK_RGB, RANK_SIZE = "AEM/BlocksRankingRGB-v0", "AEM/BlocksRankingSize-v0"
TASKS = (STACK_TWO, STACK_THREE, RANK_RGB, RANK_SIZE)
HALF = 0.025


@pytest.fixture(scope="module", params=TASKS)
def env(request):
    env = gym.make(request.param, obs_mode="state")
    yield env
    env.close()


def settled(env, seed=0):
    """Reset, then take one step holding still, so the contact list is this episode's."""
    env.reset(seed=seed)
    env.step(env.unwrapped.qpos)
    return env.unwrapped


def put(task, cube, xyz, yaw=0.0):
    task.set_actor_pose(cube, sapien.Pose(xyz, yaw_quat(yaw)))


def stack(task, lowest_xy, offsets):
    """Stack the task's cubes (bottom first), each shifted by ``offsets[i]`` (dx, dy, dz)."""
    cubes = [task.red, task.green] + ([task.blue] if hasattr(task, "blue") else [])
    for level, (cube, offset) in enumerate(zip(cubes, offsets)):
        put(task, cube, [*lowest_xy, HALF + 2 * HALF * level] + np.asarray(offset), yaw=0.1)


def lay_row(task, shifts, order=(0, 1, 2)):
    """The task's cubes on the expert's slots (cube i on slot ``order[i]``, at its own height),
    each moved by ``shifts[i]`` (dx, dy)."""
    slots = task.slots()
    for cube, half, slot, shift in zip(task.cubes, task.halves, order, shifts):
        put(task, cube, [slots[slot][0] + shift[0], slots[slot][1] + shift[1], half])


def test_registered_with_metadata():
    for env_id in TASKS:
        task = get_task(env_id)
        assert task.arms == 2 and "pick" in task.skills and task.memory is None
        assert gym.spec(env_id.replace("-v0", "-Cluttered-v0")).max_episode_steps > 0


def test_cubes_start_resting_apart_and_off_their_goal(env):
    for seed in range(5):
        task = settled(env, seed)
        info = task.evaluate()
        assert not info["success"]
        cubes = [entity for entity, _ in task._task_objects]
        for i, a in enumerate(cubes):
            assert a.pose.p[2] < 0.03  # on the table, not stacked
            for b in cubes[i + 1:]:
                assert np.linalg.norm(a.pose.p[:2] - b.pose.p[:2]) > 0.05


@pytest.mark.parametrize("offset, success", [
    ((0.0, 0.0, 0.0), True),
    ((0.01, -0.01, 0.0), True),
    ((0.03, 0.0, 0.0), False),  # overhangs: more than 2.5 cm off in xy
    ((0.0, 0.0, 0.02), False),  # hovering 2 cm above the red cube
])
def test_stack_two_success_rule(offset, success):
    env = gym.make(STACK_TWO, obs_mode="state")
    task = settled(env)
    stack(task, (0.02, 0.05), [(0, 0, 0), offset])
    info = task.evaluate()
    assert info["success"] is success
    assert info["green_on_red"] is success
    env.close()


@pytest.mark.parametrize("blue_offset, success", [
    ((0.0, 0.0, 0.0), True),
    ((0.0, 0.028, 0.0), False),  # blue slid off the side of green
])
def test_stack_three_success_rule(blue_offset, success):
    env = gym.make(STACK_THREE, obs_mode="state")
    task = settled(env)
    stack(task, (-0.02, 0.0), [(0, 0, 0), (0.005, 0, 0), blue_offset])
    info = task.evaluate()
    assert info["success"] is success and info["green_on_red"]
    # Blue on red with green beside them is not a stack of three.
    put(task, task.green, [0.1, 0.1, HALF])
    put(task, task.blue, [-0.02, 0.0, 3 * HALF])
    assert not task.evaluate()["success"]
    env.close()


@pytest.mark.parametrize("env_id", [RANK_RGB, RANK_SIZE])
@pytest.mark.parametrize("shifts, order, success, failed_check", [
    ([(0, 0), (0, 0), (0, 0)], (0, 1, 2), True, None),
    ([(0.01, 0.005), (-0.005, 0), (0, -0.01)], (0, 1, 2), True, None),
    ([(0, 0), (0, 0), (0.03, 0)], (0, 1, 2), False, "aligned"),  # last cube 3 cm out of line
    ([(0, 0.03), (0, 0), (0, 0)], (0, 1, 2), False, "adjacent"),  # first cube 4.5 cm away
    ([(0, 0), (0, 0), (0, 0)], (0, 2, 1), False, "ordered"),  # the last two swapped
    ([(0, 0), (0.07, 0), (0, 0)], (0, 1, 2), False, "aligned"),  # middle cube still behind
])
def test_ranking_success_rule(env_id, shifts, order, success, failed_check):
    env = gym.make(env_id, obs_mode="state")
    task = settled(env)
    lay_row(task, shifts, order)
    info = task.evaluate()
    assert info["success"] is success
    if failed_check:
        assert info[failed_check] is False
    env.close()


@pytest.mark.parametrize("seed", [0, 1])
def test_expert_solves_with_staged_reward(env, seed):
    env.reset(seed=seed)
    rewards, terminated = [], False
    for action in env.unwrapped.expert():
        _, reward, terminated, truncated, _ = env.step(action)
        rewards.append(reward)
        if terminated or truncated:
            break
    assert terminated and rewards[-1] == 1.0
    assert all(0.0 <= r <= 1.0 for r in rewards)
    assert len(rewards) < env.spec.max_episode_steps
    # Progress is rewarded: the reward halfway is above the start and below the end.
    assert rewards[0] < rewards[len(rewards) // 2] < 1.0
