"""The cue-memory tasks: ObserveAndPickup, RememberColor3/5/9, ShellGame, SeqOfColors."""

import gymnasium as gym
import numpy as np
import pytest
import sapien

from aem_bench.registration import get_task
from aem_bench.tasks import observe_and_pickup
from aem_bench.tasks._memory_cues import PALETTE, is_hidden, row_slots

OBSERVE, SHELL, SEQ = "AEM/ObserveAndPickup-v0", "AEM/ShellGame-v0", "AEM/SeqOfColors-v0"
COLOUR_IDS = ("AEM/RememberColor3-v0", "AEM/RememberColor5-v0", "AEM/RememberColor9-v0")
LIFT_IDS = (OBSERVE, SHELL, *COLOUR_IDS)
ALL_IDS = (*LIFT_IDS, SEQ)
EXPECTED = {OBSERVE: ("object", 1 / 5), SHELL: ("spatial", 1 / 3), SEQ: ("sequential", 1 / 6),
            COLOUR_IDS[0]: ("object", 1 / 3), COLOUR_IDS[1]: ("object", 1 / 5),
            COLOUR_IDS[2]: ("object", 1 / 9)}


def make(env_id, **kwargs):
    return gym.make(env_id, obs_mode="state", **kwargs)


def hold(env, steps):
    """Step with the arms holding still."""
    for _ in range(steps):
        env.step(env.unwrapped.qpos)


def base_colour(entity):
    shape = entity.find_component_by_type(sapien.render.RenderBodyComponent).render_shapes[0]
    return np.asarray(shape.material.base_color[:3])


def lift(task, entity, half, height):
    task.set_actor_pose(entity, sapien.Pose([*entity.pose.p[:2], half + height], entity.pose.q))


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_registered_as_memory_task(env_id):
    spec = get_task(env_id)
    memory, chance = EXPECTED[env_id]
    assert spec.memory == memory and spec.chance == pytest.approx(chance)
    task = make(env_id).unwrapped
    assert type(task).memory_fact and task.oracle_size > 0
    assert spec.entry_point.endswith(type(task).__name__)
    task.close()


@pytest.mark.parametrize("env_id", LIFT_IDS)
def test_lift_the_answer_succeeds_and_a_wrong_lift_fails(env_id):
    env = make(env_id)
    env.reset(seed=4)
    task = env.unwrapped
    hold(env, task.choosing_from)
    assert task.cue_hidden_at is not None and task.cue_hidden_at <= task.choosing_from
    assert all(entity.pose.p[2] > 0 for entity in task.choices)  # all on the table now
    answer, half = task.choices[task.answer], task.choice_halves[task.answer]
    wrong = (task.answer + 1) % len(task.choices)
    info = task.evaluate()
    assert not info["success"] and not info["fail"]
    lift(task, answer, half, 0.04)  # a near miss: 4 cm
    assert not task.evaluate()["success"]
    lift(task, answer, half, 0.06)
    assert task.evaluate()["success"]
    lift(task, answer, half, 0.0)
    # A wrong object lifted: the episode ends, failed, even with the answer lifted too.
    lift(task, task.choices[wrong], task.choice_halves[wrong], 0.06)
    _, reward, terminated, _, info = env.step(task.qpos)
    assert info["fail"] and terminated and not info["is_success"] and reward == 0.0
    env.close()


@pytest.mark.parametrize("env_id", (OBSERVE, *COLOUR_IDS))
def test_cue_shows_the_oracle_fact_then_hides(env_id):
    env = make(env_id)
    for seed in range(3):
        env.reset(seed=seed)
        task = env.unwrapped
        oracle = task.oracle()
        assert oracle.shape == (task.oracle_size,) and oracle.dtype == np.float32
        # The oracle is the place of the answer, one-hot, in the order the places are listed.
        assert oracle.sum() == 1.0 and oracle.max() == 1.0
        place = int(oracle.argmax())
        if env_id == OBSERVE:
            cue = task.copies[task.answer]
            assert task.oracle_size == 5
            places = row_slots(5, observe_and_pickup.ROW_SPACING, observe_and_pickup.ROW_X)
            # The object standing at that place of the row is the answer.
            np.testing.assert_allclose(task.choices[task.answer].pose.p[:2], places[place],
                                       atol=1e-6)
            colour = base_colour(cue)
            # The answer in the row looks like the shown copy.
            np.testing.assert_allclose(base_colour(task.choices[task.answer]), colour, atol=1e-6)
            assert sum(not is_hidden(copy) for copy in task.copies) == 1
        else:
            cue = task.shown
            assert task.oracle_size == type(task).oracle_size == task.num_choices
            assert place == task.answer
            colour = PALETTE[int(task.colours[place])][1]
            assert all(cube.pose.p[2] < 0 for cube in task.choices)  # not there yet
        np.testing.assert_allclose(base_colour(cue), colour, atol=1e-6)
        assert not is_hidden(cue) and task.cue_hidden_at is None
        hold(env, 8)
        assert is_hidden(cue) and task.cue_hidden_at == 8
        if env_id != OBSERVE:
            hold(env, task.choosing_from - 8)
            assert len({tuple(base_colour(cube)) for cube in task.choices}) == task.num_choices
            np.testing.assert_allclose(base_colour(task.choices[task.answer]), colour, atol=1e-6)
            # The cube with the shown colour stands at the oracle's place.
            np.testing.assert_allclose(task.choices[task.answer].pose.p[:2],
                                       task.slots()[place], atol=2e-3)
        np.testing.assert_array_equal(task.oracle(), oracle)
    env.close()


def test_shell_game_cups_cover_the_ball_alike():
    env = make(SHELL)
    for seed in range(3):
        env.reset(seed=seed)
        task = env.unwrapped
        spot = int(task.oracle().argmax())
        assert task.oracle().sum() == 1.0 and spot == task.answer
        np.testing.assert_allclose(task.ball.pose.p[:2], task.spots[spot])
        assert all(cup.pose.p[2] < 0 for cup in task.choices)  # the ball is in view
        hold(env, 8)
        assert task.cue_hidden_at == 8
        colours = {tuple(base_colour(cup)) for cup in task.choices}
        assert len(colours) == 1  # identical cups
        for cup, spot_xy in zip(task.choices, task.spots):
            np.testing.assert_allclose(cup.pose.p[:2], spot_xy, atol=2e-3)
        # The ball lies wholly inside the cup over it.
        cup = task.choices[spot].pose.p
        ball = task.ball.pose.p
        assert np.linalg.norm(ball[:2] - cup[:2]) + 0.024 < 0.03 and ball[2] + 0.024 < 0.09
    env.close()


def press(task, button, depth):
    task.buttons[button].set_qpos([depth])
    task._count_presses()


def test_seq_of_colors_presses_in_order():
    env = make(SEQ)
    env.reset(seed=2)
    task = env.unwrapped
    # The oracle is the button to press next, one-hot; all zeros once all are pressed.
    assert task.oracle_size == 3 and task.oracle().dtype == np.float32
    np.testing.assert_array_equal(task.oracle(), np.eye(3)[task.sequence[0]])
    shown = [int(task.colours[button]) for button in task.sequence]
    # The tile shows the sequence, one colour after another, then disappears.
    for index in range(3):
        np.testing.assert_allclose(base_colour(task.tile), PALETTE[shown[index]][1], atol=1e-6)
        hold(env, 6)
    assert is_hidden(task.tile) and task.cue_hidden_at == 18
    first, second, third = task.sequence
    np.testing.assert_array_equal(task.oracle(), np.eye(3)[first])
    press(task, first, 0.008)
    assert task.pressed == 1
    np.testing.assert_array_equal(task.oracle(), np.eye(3)[second])
    press(task, first, 0.008)  # still held down: not a second press
    assert task.pressed == 1 and not task.evaluate()["fail"]
    press(task, first, 0.0)
    press(task, second, 0.005)  # a near miss: half way down is not a press
    assert task.pressed == 1
    np.testing.assert_array_equal(task.oracle(), np.eye(3)[second])
    press(task, second, 0.008)
    press(task, second, 0.0)
    assert not task.evaluate()["success"]
    np.testing.assert_array_equal(task.oracle(), np.eye(3)[third])
    press(task, third, 0.008)
    assert task.evaluate()["success"]
    np.testing.assert_array_equal(task.oracle(), np.zeros(3))
    # Another episode: a press out of order ends it as failed.
    env.reset(seed=2)
    press(task, task.sequence[1], 0.008)
    _, reward, terminated, _, info = env.step(task.qpos)
    assert info["fail"] and terminated and not info["is_success"] and reward == 0.0
    env.close()


def place_of_the_fact(env_id, task) -> int:
    """Where the answer is, read from the scene rather than from ``answer`` or ``oracle()``."""
    def nearest(xy, places):
        return int(np.argmin([np.linalg.norm(np.asarray(xy[:2]) - place[:2]) for place in places]))

    if env_id == SHELL:  # the spot the ball sits on
        return nearest(task.ball.pose.p, task.spots)
    if env_id == OBSERVE:  # the place in the row of the object that looks like the shown copy
        [shown] = [copy for copy in task.copies if not is_hidden(copy)]
        [choice] = [c for c in task.choices if np.allclose(base_colour(c), base_colour(shown))]
        return nearest(choice.pose.p, row_slots(5, observe_and_pickup.ROW_SPACING,
                                               observe_and_pickup.ROW_X))
    if env_id == SEQ:  # the first button of the sequence
        return int(task.sequence[0])
    # RememberColor: the slot whose cube will have the shown cube's colour
    colours = [PALETTE[int(colour)][1] for colour in task.colours]
    [place] = [k for k, colour in enumerate(colours)
               if np.allclose(colour, base_colour(task.shown), atol=1e-6)]
    return place


def test_oracle_observation():
    # One test for all: the first picture of a process costs ~10 s, and again after the last
    # rendering environment closes, so they all stay open until the end.
    envs = [gym.make(env_id, obs_mode="rgb+oracle", camera_size=(32, 32)) for env_id in ALL_IDS]
    for env_id, env in zip(ALL_IDS, envs):
        places = set()
        for seed in (1, 2, 3):
            obs, _ = env.reset(seed=seed)
            assert "oracle" in obs and env.observation_space.contains(obs)
            place = place_of_the_fact(env_id, env.unwrapped)
            np.testing.assert_array_equal(obs["oracle"], np.eye(env.unwrapped.oracle_size)[place],
                                          err_msg=f"{env_id} seed {seed}")
            places.add(place)
            obs, *_ = env.step(env.unwrapped.qpos)
            assert env.observation_space.contains(obs)
            np.testing.assert_array_equal(obs["oracle"], np.eye(env.unwrapped.oracle_size)[place])
        assert len(places) > 1, f"{env_id}: the fact never changed over three seeds"
    for env in envs:
        env.close()


@pytest.mark.parametrize("env_id", ALL_IDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_expert_solves(env_id, seed):
    env = make(env_id)
    env.reset(seed=seed)
    rewards, terminated = [], False
    for action in env.unwrapped.expert():
        _, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
        if terminated or truncated:
            break
    assert terminated and info["is_success"] and rewards[-1] == 1.0
    assert all(0.0 <= r <= 1.0 for r in rewards)
    assert len(rewards) < env.spec.max_episode_steps
    env.close()


def shown_appearance(env_id, task) -> list[int]:
    """What was shown, read from the scene while the cue is up: the palette index of the shown
    cube's colour, the shape index of the shown copy, or SeqOfColors' colours in the order the
    tile shows them (stepping the episode through the cue)."""
    def palette_index(entity) -> int:
        [index] = [k for k, (_, rgb) in enumerate(PALETTE)
                   if np.allclose(rgb, base_colour(entity), atol=1e-6)]
        return index

    if env_id == OBSERVE:
        return [next(k for k, copy in enumerate(task.copies) if not is_hidden(copy))]
    if env_id == SHELL:  # the fact is the ball's spot: nothing to match
        return [place_of_the_fact(env_id, task)]
    if env_id == SEQ:
        shown = []
        for _ in range(3):
            shown.append(palette_index(task.tile))
            for _ in range(6):
                task.step(task.qpos)
        return shown
    return [palette_index(task.shown)]


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_fact_is_what_was_shown_not_where_to_act(env_id):
    env = make(env_id)
    task = env.unwrapped
    differs = False
    for seed in range(6):
        env.reset(seed=seed)
        fact = task.fact()
        assert fact.shape == (task.fact_size,) and fact.dtype == np.float32
        oracle_place = int(task.oracle().argmax())
        shown = shown_appearance(env_id, task)
        # One one-hot block per thing shown, in the order shown.
        blocks = fact.reshape(len(shown), -1)
        assert [int(block.argmax()) for block in blocks] == shown, f"{env_id} seed {seed}"
        assert np.all(blocks.sum(axis=1) == 1.0)
        differs |= shown[0] != oracle_place
        hold(env, 20)
        np.testing.assert_array_equal(task.fact(), fact)  # a fact, not a what-to-do-next
    # The oracle says where to act; the fact says what was shown. They part where a task has
    # something to match (ShellGame's fact is a place: the two are one there).
    assert differs == (env_id != SHELL), env_id
    env.close()
