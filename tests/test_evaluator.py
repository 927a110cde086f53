"""Evaluator: Wilson interval, episode bookkeeping, report JSON, and runs on the real task."""

from __future__ import annotations

import json
from datetime import datetime

import gymnasium as gym
import numpy as np
import pytest

from aem_bench.evaluator import evaluate, run_episode, wilson_interval, write_report
from aem_bench.leaderboard.results import validate_result

TASK = "AEM/HandoverBlock-v0"


# --- Wilson interval -----------------------------------------------------------------------------


# 95% Wilson score intervals to 4 d.p.: the first four are Newcombe (1998), Statistics in Medicine
# 17:857, Table I (method 3); the rest are the usual textbook n=10 cases.
@pytest.mark.parametrize(
    "successes, n, lo, hi",
    [
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (5, 10, 0.2366, 0.7634),
    ],
)
def test_wilson_interval_matches_published_values(successes, n, lo, hi):
    got_lo, got_hi = wilson_interval(successes, n)
    assert got_lo == pytest.approx(lo, abs=1e-4)
    assert got_hi == pytest.approx(hi, abs=1e-4)


def test_wilson_interval_edges_are_exact_and_wider_at_higher_confidence():
    assert wilson_interval(0, 7)[0] == 0.0
    assert wilson_interval(7, 7)[1] == 1.0
    lo95, hi95 = wilson_interval(5, 10)
    lo99, hi99 = wilson_interval(5, 10, confidence=0.99)
    assert lo99 < lo95 and hi99 > hi95


@pytest.mark.parametrize(
    "successes, n, confidence, message",
    [
        (0, 0, 0.95, "n=0"),
        (11, 10, 0.95, "successes"),
        (-1, 10, 0.95, "successes"),
        (5, 10, 1.0, "confidence"),
    ],
)
def test_wilson_interval_rejects_bad_input(successes, n, confidence, message):
    with pytest.raises(ValueError, match=message):
        wilson_interval(successes, n, confidence)


# --- Bookkeeping on a tiny deterministic environment ----------------------------------------------


class CountdownEnv(gym.Env):
    """Succeeds at step 3 on even seeds, otherwise runs until the time limit; rejects bad actions
    the way the AEM tasks do."""

    observation_space = gym.spaces.Dict(
        {"qpos": gym.spaces.Box(-np.inf, np.inf, (16,), np.float32)}
    )
    action_space = gym.spaces.Box(-np.inf, np.inf, (16,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._winner, self._t = seed % 2 == 0, 0
        return {"qpos": np.zeros(16, np.float32)}, {"is_success": False}

    def step(self, action):
        action = np.asarray(action)
        if action.shape != (16,) or not np.isfinite(action).all():
            raise ValueError(f"action must be 16 finite values, got shape {action.shape}")
        self._t += 1
        success = self._winner and self._t == 3
        return (
            {"qpos": np.zeros(16, np.float32)},
            float(success),
            success,
            False,
            {"is_success": success},
        )


COUNTDOWN = "AEMTest/Countdown-v0"
gym.register(COUNTDOWN, entry_point=CountdownEnv, max_episode_steps=5)


class HoldPosePolicy:
    """Do-nothing baseline: command the joints to stay where they are."""

    def __init__(self):
        self.reset_seeds = []

    def reset(self, seed=None):
        self.reset_seeds.append(seed)

    def act(self, observation):
        return np.asarray(observation["qpos"], dtype=np.float32).copy()


class BadOnFirstEpisodePolicy(HoldPosePolicy):
    """Holds pose, except that in its first episode it sends ``bad_action``."""

    def __init__(self, bad_action):
        super().__init__()
        self.bad_action = bad_action

    def act(self, observation):
        return self.bad_action if len(self.reset_seeds) == 1 else super().act(observation)


def test_evaluate_runs_consecutive_seeds_and_counts_successes():
    policy = HoldPosePolicy()
    report = evaluate(policy, COUNTDOWN, episodes=4, seed=10, progress=False)
    summary = report.summary()

    assert policy.reset_seeds == [10, 11, 12, 13]
    assert [r.steps for r in report.records] == [3, 5, 3, 5]
    assert all(len(r.latencies_ms) == r.steps for r in report.records)
    assert summary["seeds"] == [10, 11, 12, 13]
    assert (summary["episodes"], summary["successes"], summary["success_rate"]) == (4, 2, 0.5)
    assert summary["success_ci95"] == list(wilson_interval(2, 4))
    assert summary["policy"] == "HoldPosePolicy" and summary["variant"] == "clean"
    assert summary["errors"] == 0 and summary["steps_per_second"] > 0
    assert 0 <= summary["latency_ms"]["median"] <= summary["latency_ms"]["p95"]


def test_evaluate_rejects_zero_episodes():
    with pytest.raises(ValueError, match="episodes"):
        evaluate(HoldPosePolicy(), COUNTDOWN, episodes=0, progress=False)


def test_run_episode_records_rejected_action_as_failure():
    env = gym.make(COUNTDOWN)
    record = run_episode(env, BadOnFirstEpisodePolicy(np.full(16, np.nan)), seed=0)
    assert (record.success, record.steps) == (False, 0)
    assert record.error.startswith("step 0:") and "finite" in record.error


def test_report_json_round_trips_and_is_a_valid_results_file(tmp_path):
    report = evaluate(HoldPosePolicy(), COUNTDOWN, episodes=3, progress=False, policy_name="hold")
    path = write_report(report, tmp_path / "sub" / "hold.json")

    loaded = json.loads(path.read_text())
    assert loaded == report.to_dict()
    assert validate_result(loaded, str(path))["policy"] == "hold"
    assert loaded["hardware"]["cpu"] and loaded["hardware"]["cores"] >= 1
    assert "numpy" in loaded["versions"] and "git_commit" in loaded
    assert datetime.fromisoformat(loaded["created"]).utcoffset().total_seconds() == 0
    assert [r["seed"] for r in loaded["records"]] == loaded["seeds"]


# --- The real task ---------------------------------------------------------------------------------


def test_hold_pose_policy_on_handover_block():
    policy = HoldPosePolicy()
    report = evaluate(
        policy, TASK, episodes=2, env_kwargs={"max_episode_steps": 20}, progress=False
    )
    assert policy.reset_seeds == [100_000, 100_001]
    for record in report.records:
        assert record.error is None
        assert 1 <= record.steps <= 20
        assert len(record.latencies_ms) == record.steps
    summary = report.summary()
    assert summary["task"] == TASK and summary["episodes"] == 2
    assert summary["steps_per_second"] > 0
    validate_result(json.loads(json.dumps(report.to_dict())))


@pytest.mark.parametrize(
    "bad_action", [np.full(16, np.nan, np.float32), np.zeros(7, np.float32)], ids=["nan", "shape"]
)
def test_rejected_action_fails_only_that_episode_on_handover_block(bad_action, tmp_path):
    report = evaluate(
        BadOnFirstEpisodePolicy(bad_action),
        TASK,
        episodes=3,
        env_kwargs={"max_episode_steps": 20},
        progress=False,
    )
    first, *others = report.records
    assert first.success is False and first.steps == 0
    assert first.error.startswith("step 0:")
    assert all(r.error is None and r.steps >= 1 for r in others)
    assert report.summary()["errors"] == 1
    loaded = json.loads(write_report(report, tmp_path / "r.json").read_text())
    assert loaded["records"][0]["error"] == first.error


# --- Episode log, resume, workers ----------------------------------------------------------------


def hold_pose_policy():
    """A picklable factory, as worker processes need."""
    return HoldPosePolicy()


def test_a_killed_evaluation_resumes_without_losing_or_repeating_episodes(tmp_path):
    log = tmp_path / "episodes.jsonl"
    full = evaluate(HoldPosePolicy(), COUNTDOWN, episodes=6, seed=10, progress=False)

    class KilledAfterTwo(HoldPosePolicy):
        def reset(self, seed=None):
            if len(self.reset_seeds) == 2:
                raise KeyboardInterrupt
            super().reset(seed)

    with pytest.raises(KeyboardInterrupt):
        evaluate(KilledAfterTwo(), COUNTDOWN, episodes=6, seed=10, progress=False, log=log,
                 policy_name="hold")
    with open(log, "a") as f:
        f.write('{"seed": 12, "succ')  # a line cut short by the kill
    again = HoldPosePolicy()
    resumed = evaluate(again, COUNTDOWN, episodes=6, seed=10, progress=False, log=log,
                       policy_name="hold")
    assert again.reset_seeds == [12, 13, 14, 15]  # only what was missing
    assert [r.seed for r in resumed.records] == list(range(10, 16))
    assert [r.success for r in resumed.records] == [r.success for r in full.records]
    assert len(log.read_text().splitlines()) == 1 + 6
    done = HoldPosePolicy()
    evaluate(done, COUNTDOWN, episodes=6, seed=10, progress=False, log=log, policy_name="hold")
    assert done.reset_seeds == []  # nothing left to run


def test_an_episode_log_of_another_run_or_with_a_bad_line_is_refused(tmp_path):
    log = tmp_path / "episodes.jsonl"
    evaluate(HoldPosePolicy(), COUNTDOWN, episodes=2, seed=10, progress=False, log=log)
    with pytest.raises(ValueError, match="log of another evaluation"):
        evaluate(HoldPosePolicy(), COUNTDOWN, episodes=3, seed=10, progress=False, log=log)
    lines = log.read_text().splitlines()
    log.write_text("\n".join([lines[0], "garbage", lines[2]]) + "\n")
    with pytest.raises(ValueError, match="episodes.jsonl:2: not a JSON line"):
        evaluate(HoldPosePolicy(), COUNTDOWN, episodes=2, seed=10, progress=False, log=log)


def test_workers_give_the_records_of_one_process(tmp_path):
    local = evaluate(hold_pose_policy, COUNTDOWN, episodes=6, seed=20, progress=False)
    parallel = evaluate(hold_pose_policy, COUNTDOWN, episodes=6, seed=20, progress=False,
                        workers=2, log=tmp_path / "log.jsonl")
    key = [(r.seed, r.success, r.steps, r.error) for r in local.records]
    assert [(r.seed, r.success, r.steps, r.error) for r in parallel.records] == key
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 7
    with pytest.raises(ValueError, match="function that makes the policy"):
        evaluate(HoldPosePolicy(), COUNTDOWN, episodes=2, workers=2, progress=False)
