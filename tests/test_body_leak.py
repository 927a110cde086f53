"""The leak checks: a linear probe on the joint state or the scene of expert episodes, for the
fact."""

import gymnasium as gym
import pytest
import sapien

from aem_bench.cli import build_parser
from aem_bench.leaks import PROBED, leak_check, leak_checks, leak_table, pooled_table
from aem_bench.tasks._memory_cues import HIDDEN_Z
from aem_bench.tasks.shell_game import CUE_STEPS, ShellGameEnv


class BallTakenAwayEnv(ShellGameEnv):
    """ShellGame whose ball is taken away, to the same place in every episode, when the cups come
    down: the scene keeps nothing of where it lay."""

    def _after_step(self) -> None:
        super()._after_step()
        if self.elapsed_steps == CUE_STEPS:
            self.ball.set_pose(sapien.Pose([0.0, 0.0, HIDDEN_Z]))


BALL_TAKEN_AWAY = "AEMTest/ShellGame-BallTakenAway-v0"
gym.register(BALL_TAKEN_AWAY, entry_point=BallTakenAwayEnv, max_episode_steps=120)


@pytest.fixture(scope="module")
def put_back_block():
    return {version: leak_check(f"AEM/PutBackBlock-{version}", episodes=24)
            for version in ("v0", "v1")}


def at(result, moment):
    return next(entry for entry in result["moments"] if entry["moment"] == moment)


def test_put_back_block_v0_carries_the_mat_in_its_joints(put_back_block):
    """v0's arms reach the decision with elbows that depend on the starting mat."""
    v0 = put_back_block["v0"]
    assert v0["probed"] == "qpos" and v0["episodes"] == 24 and v0["fact_values"] == 4
    assert at(v0, "decision")["accuracy"] >= 0.9
    assert at(v0, "decision")["carries_fact"] and v0["carries_fact"]


def test_put_back_block_v1_returns_the_arms_before_the_decision(put_back_block):
    """v1 brings the arms back to their start before the decision: the probe reads far less
    there than on v0. At the cue's end the arm still holds the cube over its mat, in both."""
    v0, v1 = put_back_block["v0"], put_back_block["v1"]
    assert at(v1, "decision")["accuracy"] <= at(v0, "decision")["accuracy"] - 0.2
    assert at(v1, "cue_hidden")["accuracy"] >= 0.9
    assert at(v1, "decision")["step_median"] > at(v1, "cue_hidden")["step_median"]


def test_the_table_has_a_row_per_task_and_vector(put_back_block):
    table = leak_table(list(put_back_block.values()))
    assert "AEM/PutBackBlock-v0  qpos" in table and "AEM/PutBackBlock-v1  qpos" in table


def test_swap_blocks_pooled_probe_reads_the_moves_done_from_v0s_joints_not_v1s():
    """SwapBlocks' pooled target, the moves done at each move's start, probed on the joints of
    the same kind of episodes as the hidden fact (3 rows an episode). v0's arm is at rest only
    before the first move, so 0 moves done is read every time; v1's arm is at rest at its start
    before every move, the same joint state to 1e-5 rad, so read at that resolution the joints
    tell nothing (the probe can only guess a fold's commonest label)."""
    v0, v1 = (leak_check(f"AEM/SwapBlocks-{version}", episodes=episodes, resolution=1e-5)
              for version, episodes in (("v0", 30), ("v1", 12)))
    for result in (v0, v1):
        pooled, episodes = result["pooled"], result["episodes"]
        assert pooled["target"] == "moves_done_at_move_start" and pooled["rows"] == 3 * episodes
        assert pooled["label_counts"] == {"0": episodes, "1": episodes, "2": episodes}
        assert "rounded to steps of 1e-05" in result["input"]
    assert v0["pooled"]["accuracy"] >= 0.5 and v0["pooled"]["carries_label"]
    assert v0["pooled"]["accuracy_by_label"]["0"] == 1.0
    assert not v1["pooled"]["carries_label"] and v1["pooled"]["accuracy"] <= 0.4
    assert "AEM/SwapBlocks-v1  qpos" in pooled_table([v0, v1])


def test_a_task_without_a_pooled_target_has_no_pooled_probe(put_back_block):
    assert "pooled" not in put_back_block["v1"]
    assert pooled_table(list(put_back_block.values())).count("PutBackBlock") == 0


@pytest.fixture(scope="module")
def shell_game():
    """The same 24 expert episodes of ShellGame, as registered and with the ball taken away,
    each probed in the joints and in the scene."""
    return {env_id: {result["probed"]: result
                     for result in leak_checks(env_id, ("qpos", "scene"), episodes=24)}
            for env_id in ("AEM/ShellGame-v0", BALL_TAKEN_AWAY)}


def test_shell_game_state_observation_holds_the_ball_under_its_cup(shell_game):
    """The ball stays on its spot under the cup: no camera sees it, the state observation gives
    its position. The arm, still until the cups are down, tells nothing."""
    registered = shell_game["AEM/ShellGame-v0"]
    assert registered["scene"]["carries_fact"]
    assert at(registered["scene"], "decision")["accuracy"] >= 0.9
    assert not registered["qpos"]["carries_fact"]
    assert registered["scene"]["seeds"] == registered["qpos"]["seeds"]  # one expert run for both


def test_with_the_ball_taken_away_the_scene_carries_nothing(shell_game):
    taken_away = shell_game[BALL_TAKEN_AWAY]
    assert not taken_away["scene"]["carries_fact"]
    assert at(taken_away["scene"], "decision")["accuracy"] <= taken_away["scene"]["majority_rate"] + 0.1
    assert taken_away["scene"]["seeds"] == shell_game["AEM/ShellGame-v0"]["scene"]["seeds"]


def test_the_command_offers_what_the_module_probes():
    action = next(action for action in build_parser()._subparsers._group_actions[0]
                  .choices["body-leak"]._actions if action.dest == "what")
    assert action.choices == list(PROBED) and action.default == ["qpos"]


@pytest.mark.parametrize(("env_id", "kwargs", "message"), [
    ("AEM/ClickBell-v0", {}, "no hidden fact"),
    ("AEM/ShellGame-v0", {"episodes": 9}, "at least 2 \\* folds"),
    ("AEM/ShellGame-v0", {"folds": 1, "episodes": 10}, "folds must be at least 2"),
    ("AEM/ShellGame-v0", {"what": ("pixels",)}, "unknown probed vector 'pixels'"),
    ("AEM/ShellGame-v0", {"what": ()}, "nothing to probe"),
    ("AEM/ShellGame-v0", {"resolution": 0.0}, "resolution must be positive"),
])
def test_bad_arguments_are_refused(env_id, kwargs, message):
    with pytest.raises(ValueError, match=message):
        leak_checks(env_id, **kwargs)
