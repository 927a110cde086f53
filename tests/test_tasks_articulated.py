"""Success checks and experts of AEM/ClickBell-v0, AEM/OpenDrawer-v0 and AEM/RotateBlock-v0."""

import gymnasium as gym
import numpy as np
import pytest
import sapien

from aem_bench.expert import run_expert
from aem_bench.sim.poses import yaw_quat
from aem_bench.tasks import click_bell, open_drawer, rotate_block

TASKS = ("AEM/ClickBell-v0", "AEM/OpenDrawer-v0", "AEM/RotateBlock-v0")


@pytest.mark.parametrize("task", TASKS)
def test_state_observation_tracks_the_task_objects(envs, task):
    env = envs[task]
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert not info["success"]
    # The articulations' links are tracked: each adds a pose (7 numbers) to the state.
    assert obs["state"].shape == (14,)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_expert_solves(envs, task, seed):
    result = run_expert(envs[task], seed)
    assert result.success, result.failure
    assert result.steps < gym.spec(task).max_episode_steps


def test_click_bell_needs_a_full_press_then_release(envs):
    env = envs["AEM/ClickBell-v0"]
    env.reset(seed=0)
    bell = env.unwrapped
    # A shallow press (40% of the travel) is no click, even once released.
    bell.bell.set_qpos([0.4 * click_bell.TRAVEL])
    assert not bell.evaluate()["was_pressed"]
    bell.bell.set_qpos([0.0])
    assert not bell.evaluate()["success"]
    # A full press counts once the cap is back up (the arms stand clear at home).
    bell.bell.set_qpos([click_bell.TRAVEL])
    info = bell.evaluate()
    assert info["was_pressed"] and not info["success"]  # still held down
    bell.bell.set_qpos([0.0])
    assert bell.evaluate()["success"]
    # The click is forgotten at the next reset.
    env.reset(seed=1)
    assert not bell.evaluate()["was_pressed"]


def test_click_bell_hand_must_leave_the_cap(envs):
    env = envs["AEM/ClickBell-v0"]
    env.reset(seed=0)
    bell = env.unwrapped
    bell.bell.set_qpos([click_bell.TRAVEL])
    bell.evaluate()
    bell.bell.set_qpos([0.0])
    # Put the pressing hand's fingertips on the cap.
    arm = bell.arms[bell.side]
    tcp = arm.tcp_pose
    top = bell._cap_top_at_rest + [0.0, 0.0, click_bell.FINGERTIP_BELOW_TCP]
    q = arm.inverse_kinematics(sapien.Pose(top, tcp.q), arm.qpos[:7])
    arm.reset(np.append(q, 0.0))
    assert not bell.evaluate()["hands_clear"] and not bell.evaluate()["success"]


def test_open_drawer_success_needs_ten_centimetres(envs):
    env = envs["AEM/OpenDrawer-v0"]
    env.reset(seed=0)
    cabinet = env.unwrapped
    cabinet.cabinet.set_qpos([open_drawer.OPEN_ENOUGH + 0.02])
    assert cabinet.evaluate()["success"]
    cabinet.cabinet.set_qpos([open_drawer.OPEN_ENOUGH - 0.02])
    info = cabinet.evaluate()
    assert not info["drawer_open"] and not info["success"]


def test_open_drawer_keeps_clutter_off_its_path():
    env = gym.make("AEM/OpenDrawer-Cluttered-v0", obs_mode="state")
    env.reset(seed=3)
    cabinet = env.unwrapped
    (centre, radius), = cabinet.keep_clear()
    for entity, distractor_radius, _ in cabinet._randomizer.distractors:
        if entity.pose.p[2] > -0.5:  # on the table
            assert np.linalg.norm(entity.pose.p[:2] - centre) > radius + distractor_radius
    env.close()


def test_rotate_block_checks_the_marked_face(envs):
    env = envs["AEM/RotateBlock-v0"]
    env.reset(seed=0)
    task = env.unwrapped
    xy = task.block.pose.p[:2]
    z = rotate_block.BLOCK_HALF_SIZE[2]

    def put(yaw_offset_deg, height=z):
        yaw = task.target_yaw + np.deg2rad(yaw_offset_deg)
        task.set_actor_pose(task.block, sapien.Pose([*xy, height], yaw_quat(yaw)))
        return task.evaluate()

    assert put(10.0)["success"]
    assert put(-10.0)["success"]
    info = put(25.0)
    assert not info["face_aligned"] and not info["success"]
    assert not put(180.0)["success"]  # the opposite face points along the arrow
    assert not put(90.0)["success"]  # another face does
    info = put(0.0, height=z + 0.03)  # aligned but held in the air
    assert info["face_aligned"] and not info["block_resting"] and not info["success"]
