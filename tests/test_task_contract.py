"""The contract every registered task keeps, in every scene variant: one test per id.

Gymnasium's checker, observation and action spaces, the same seed giving the same episode, clear
errors on bad actions, a dense reward in [0, 1] and the same task layout across scene variants.
"""

import gymnasium as gym
import numpy as np
import pytest
import sapien
from gymnasium.utils.env_checker import check_env

from aem_bench.registration import TASKS, VARIANT_SUFFIXES, variant_id
from aem_bench.sim.clutter import CLEARANCE, TABLE_HEIGHT_JITTER
from aem_bench.sim.tabletop import ARM_BASE_Y

ALL_IDS = sorted(TASKS)
BASE_IDS = sorted({spec.base_id for spec in TASKS.values()})
EXPERT_STEPS = 12  # enough to move the arms and touch nothing: a cheap determinism probe


def rollout(env, seed):
    obs, _ = env.reset(seed=seed)
    frames, qpos, rewards = [obs["rgb"]], [obs["qpos"]], []
    for action, _ in zip(env.unwrapped.expert(), range(EXPERT_STEPS)):
        obs, reward, *_ = env.step(action)
        frames.append(obs["rgb"])
        qpos.append(obs["qpos"])
        rewards.append(reward)
    return np.stack(frames), np.stack(qpos), np.array(rewards)


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_task_contract(env_id):
    env = gym.make(env_id)
    try:
        check_env(env.unwrapped, skip_render_check=True)

        obs, info = env.reset(seed=3)
        assert env.observation_space.contains(obs)
        assert obs["rgb"].std() > 5, "the head camera sees a flat picture"
        assert info["is_success"] is False, "the task starts solved"
        assert gym.spec(env_id).max_episode_steps == TASKS[env_id].max_episode_steps

        # Same seed, same pixels and joint trajectory; another seed, another layout.
        frames, qpos, rewards = rollout(env, seed=11)
        again = rollout(env, seed=11)
        np.testing.assert_array_equal(frames, again[0])
        np.testing.assert_array_equal(qpos, again[1])
        np.testing.assert_array_equal(rewards, again[2])
        assert not np.array_equal(frames[0], rollout(env, seed=12)[0][0])
        assert np.all((rewards >= 0.0) & (rewards <= 1.0))

        # Bad actions are refused with a message that names the problem.
        env.reset(seed=0)
        bad = env.action_space.sample()
        bad[2] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            env.step(bad)
        with pytest.raises(ValueError, match="shape"):
            env.step(np.zeros(7, dtype=np.float32))
    finally:
        env.close()


@pytest.mark.parametrize("base_id", BASE_IDS)
def test_same_seed_same_task_layout_in_every_scene(base_id):
    """Variants draw their randomness after the task's: results across scenes are paired."""
    states = []
    for scene in VARIANT_SUFFIXES:
        env = gym.make(variant_id(base_id, scene), obs_mode="state")
        obs, _ = env.reset(seed=5)
        states.append(obs["state"])
        env.close()
    for state in states[1:]:
        np.testing.assert_allclose(state, states[0], atol=1e-6)


@pytest.mark.parametrize("base_id", BASE_IDS)
def test_clutter_keeps_off_the_task_objects(base_id):
    env = gym.make(variant_id(base_id, "cluttered"), obs_mode="state")
    task = env.unwrapped
    on_table = 0
    for seed in range(3):
        env.reset(seed=seed)
        footprints = task.footprints()
        for entity, radius, _ in task._randomizer.distractors:
            xy = entity.pose.p[:2]
            if entity.pose.p[2] < 0:  # parked off the table
                continue
            on_table += 1
            for centre, other in footprints:
                assert np.linalg.norm(xy - centre) >= radius + other + CLEARANCE - 1e-6
    env.close()
    assert on_table >= 3 * 3, "fewer distractors than expected on the table"


def test_randomized_scene_moves_camera_and_table_height():
    env = gym.make("AEM/HandoverBlock-Randomized-v0")
    task = env.unwrapped
    poses, heights = [], []
    for seed in range(4):
        env.reset(seed=seed)
        poses.append(task.cameras["rgb"].get_local_pose().p)
        heights.append(task.arms["left"].base_pose.p[2])
        assert task.arms["right"].base_pose.p[2] == pytest.approx(heights[-1])
        assert abs(task.arms["left"].base_pose.p[1]) == pytest.approx(ARM_BASE_Y)
    env.close()
    assert len({tuple(np.round(p, 6)) for p in poses}) == 4
    assert all(abs(h) <= TABLE_HEIGHT_JITTER for h in heights) and np.std(heights) > 1e-3


def _scene_facts(env) -> dict:
    """What a scene variant changes, read from the built scene: distractors standing on the
    table, the table's colour, the ambient light, the arms' base height."""
    task = env.unwrapped
    distractors = task._randomizer.distractors if task._randomizer else []
    shape = task.table.find_component_by_type(sapien.render.RenderBodyComponent).render_shapes[0]
    return {
        "on_table": sum(entity.pose.p[0] > -1.0 for entity, _, _ in distractors),
        "table": tuple(np.round(shape.material.base_color[:3], 6)),
        "ambient": tuple(np.round(task.scene.ambient_light, 6)),
        "base_z": round(float(task.arms["left"].base_pose.p[2]), 6),
    }


def test_scene_keyword_builds_that_scene():
    facts = {}
    for scene in ("clean", "cluttered", "randomized"):
        env = gym.make("AEM/HandoverBlock-v0", scene=scene, camera_size=(32, 32))
        env.reset(seed=2)
        facts[scene] = _scene_facts(env)
        env.close()
    clean, cluttered, randomized = facts["clean"], facts["cluttered"], facts["randomized"]
    assert clean["on_table"] == 0 and clean["base_z"] == 0.0
    # Cluttered: distractors on the table, appearance and height untouched.
    assert cluttered["on_table"] >= 5
    assert {k: cluttered[k] for k in ("table", "ambient", "base_z")} == \
        {k: clean[k] for k in ("table", "ambient", "base_z")}
    # Randomized: distractors too, and another table colour, light and table height.
    assert randomized["on_table"] >= 5
    assert all(randomized[k] != clean[k] for k in ("table", "ambient", "base_z"))
    # The registered variant id builds the same scene as the keyword.
    by_id = gym.make("AEM/HandoverBlock-Randomized-v0", camera_size=(32, 32))
    by_id.reset(seed=2)
    assert _scene_facts(by_id) == randomized
    by_id.close()


def test_unknown_scene_and_obs_mode_are_refused():
    with pytest.raises(ValueError, match="scene must be one of"):
        gym.make("AEM/HandoverBlock-v0", scene="messy")
    with pytest.raises(ValueError, match="obs_mode must be one of"):
        gym.make("AEM/HandoverBlock-v0", obs_mode="depth")


def test_every_task_has_three_registered_variants():
    for base_id in BASE_IDS:
        for scene in VARIANT_SUFFIXES:
            spec = TASKS[variant_id(base_id, scene)]
            assert spec.scene == scene and spec.base_id == base_id
            assert gym.spec(spec.env_id).kwargs["scene"] == scene


MEMORY_IDS = sorted(spec.env_id for spec in TASKS.values()
                    if spec.memory is not None and spec.scene == "clean")


@pytest.mark.parametrize("env_id", MEMORY_IDS)
def test_memory_task_declares_its_fact_and_oracle(env_id):
    spec = TASKS[env_id]
    assert 0.0 < spec.chance < 1.0
    env = gym.make(env_id, obs_mode="rgb+oracle")
    try:
        task = env.unwrapped
        assert isinstance(type(task).memory_fact, str) and type(task).memory_fact
        obs, _ = env.reset(seed=0)
        assert obs["oracle"].shape == (task.oracle_size,) and obs["oracle"].dtype == np.float32
        assert obs["fact"].shape == (task.fact_size,) and obs["fact"].dtype == np.float32
        np.testing.assert_array_equal(obs["fact"], task.fact())
        if env_id != "AEM/SeqOfColors-v0":  # its fact is the colours shown, one block each
            assert int(obs["fact"].argmax()) == task.hidden_fact() and obs["fact"].sum() == 1.0
        assert env.observation_space.contains(obs)
        assert task.cue_hidden_at is None, "the cue must be visible when the episode starts"
    finally:
        env.close()


def test_oracle_mode_is_refused_on_a_markovian_task():
    with pytest.raises(ValueError, match="memory task"):
        gym.make("AEM/HandoverBlock-v0", obs_mode="rgb+oracle")
