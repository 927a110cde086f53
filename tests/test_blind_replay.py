"""The blind-replay rate: the expert's actions of one seed played open-loop on another."""

import gymnasium as gym
import numpy as np
import pytest

from aem_bench.expert import blind_replay_rate, replay_actions, run_expert


def test_replay_on_the_recorded_seed_repeats_the_expert():
    """Open-loop replay is faithful: on the seed the actions came from, it succeeds as the expert
    did, so a failure on another seed is the layout's doing."""
    env = gym.make("AEM/HandoverBlock-v0", obs_mode="state")
    try:
        actions = []
        assert run_expert(env, 3, on_step=lambda a: actions.append(np.array(a))).success
        assert replay_actions(env, 3, actions)
        assert not replay_actions(env, 1003, actions)
    finally:
        env.close()


def test_a_randomised_layout_defeats_blind_replay():
    result = blind_replay_rate("AEM/HandoverBlock-v0", pairs=4)
    assert result["pairs"] == 4 and result["successes"] == 0 and result["rate"] == 0
    assert result["replay_seeds"] == [1000, 1001, 1002, 1003]
    assert not set(result["source_seeds"]) & set(result["replay_seeds"])
    assert result["ci95"][0] == 0 and 0.4 < result["ci95"][1] < 0.6


def test_a_barely_randomised_layout_shows_in_the_rate():
    """OpenDrawer's blind replays succeed on 20 of 50 seeds (README, Tasks)."""
    result = blind_replay_rate("AEM/OpenDrawer-v0", pairs=6)
    assert result["successes"] >= 1


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"pairs": 0}, "pairs must be at least 1"),
    ({"pairs": 5, "replay_seed": 10}, "overlap"),
    ({"pairs": 5, "first_seed": -1}, "at least 0"),
])
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        blind_replay_rate("AEM/ClickBell-v0", **kwargs)
