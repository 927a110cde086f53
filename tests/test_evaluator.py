"""Evaluator: episode bookkeeping, report JSON, and runs on the real task."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import gymnasium as gym
import imageio.v3 as iio
import numpy as np
import pytest

from aem_bench.evaluator import (
    EvaluationError,
    evaluate,
    run_episode,
    write_report,
)
from aem_bench.leaderboard.results import validate_result
from aem_bench.stats import wilson_interval

TASK = "AEM/HandoverBlock-v0"


# --- Bookkeeping on a tiny deterministic environment ----------------------------------------------


class CountdownEnv(gym.Env):
    """Succeeds at step 3 on even seeds, otherwise runs until the time limit; rejects bad actions
    the way the AEM tasks do. Its frame is a grey level that brightens every step."""

    observation_space = gym.spaces.Dict({
        "qpos": gym.spaces.Box(-np.inf, np.inf, (16,), np.float32),
        "rgb": gym.spaces.Box(0, 255, (16, 16, 3), np.uint8),
    })
    action_space = gym.spaces.Box(-np.inf, np.inf, (16,), np.float32)

    def _observation(self):
        return {"qpos": np.zeros(16, np.float32),
                "rgb": np.full((16, 16, 3), 40 * self._t, np.uint8)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._seed, self._winner, self._t = seed, seed % 2 == 0, 0
        return self._observation(), {"is_success": False}

    def step(self, action):
        action = np.asarray(action)
        if action.shape != (16,) or not np.isfinite(action).all():
            raise ValueError(f"action must be 16 finite values, got shape {action.shape}")
        self._t += 1
        success = self._winner and self._t == 3
        return (
            self._observation(),
            float(success),
            success,
            False,
            {"is_success": success},
        )


COUNTDOWN = "AEMTest/Countdown-v0"
gym.register(COUNTDOWN, entry_point=CountdownEnv, max_episode_steps=5)


class CrashingEnv(CountdownEnv):
    """Countdown whose simulator fails at the first step of seed ``crash_seed``: it raises, or,
    while the file ``die_once`` exists, deletes it and kills the process (a native crash)."""

    def __init__(self, crash_seed: int, die_once: str | None = None):
        self.crash_seed, self.die_once = crash_seed, die_once

    def step(self, action):
        if self._seed == self.crash_seed:
            if self.die_once is None:
                raise RuntimeError("simulated solver blow-up")
            if os.path.exists(self.die_once):
                os.remove(self.die_once)
                os._exit(3)
        return super().step(action)


CRASHING = "AEMTest/Crashing-v0"
gym.register(CRASHING, entry_point=CrashingEnv, max_episode_steps=5)


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


class EncoderTimedPolicy(HoldPosePolicy):
    """Reports an encoder time on every other call, as a chunking policy does."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def act(self, observation):
        self.calls += 1
        self.last_encoder_ms = (1.0 if self.calls % 4 == 1 else 3.0) if self.calls % 2 else None
        return super().act(observation)


def test_report_has_encoder_latency_peak_memory_and_throughput():
    summary = evaluate(EncoderTimedPolicy(), COUNTDOWN, episodes=4, seed=10,
                       progress=False).summary()
    assert summary["encoder_latency_ms"]["median"] == 2.0
    assert summary["encoder_latency_ms"]["p95"] == pytest.approx(3.0)
    assert summary["peak_rss_mb"] > 10  # a Python process with numpy and gymnasium
    assert summary["episodes_per_hour"] > 0 and summary["workers"] == 1
    assert (summary["encoder"], summary["head"]) == ("custom", "custom")
    plain = evaluate(HoldPosePolicy(), COUNTDOWN, episodes=1, progress=False, encoder="mine",
                     head="dp").summary()
    assert plain["encoder_latency_ms"] == {"median": None, "p95": None}
    assert (plain["encoder"], plain["head"]) == ("mine", "dp")


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
    # The leaderboard takes only registered AEM tasks; as one, the file is valid.
    assert validate_result({**loaded, "task": "AEM/HandoverBlock-v0"})["policy"] == "hold"
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
        evaluate(HoldPosePolicy(), COUNTDOWN, episodes=2, seed=11, progress=False, log=log)
    with pytest.raises(ValueError, match="log of another evaluation"):
        evaluate(HoldPosePolicy(), COUNTDOWN, episodes=2, seed=10, progress=False, log=log,
                 policy_name="another policy")
    lines = log.read_text().splitlines()
    log.write_text("\n".join([lines[0], "garbage", lines[2]]) + "\n")
    with pytest.raises(ValueError, match="episodes.jsonl:2: not a JSON line"):
        evaluate(HoldPosePolicy(), COUNTDOWN, episodes=2, seed=10, progress=False, log=log)


def test_more_episodes_of_a_logged_run_extend_its_log(tmp_path):
    log = tmp_path / "episodes.jsonl"
    first = evaluate(HoldPosePolicy(), COUNTDOWN, episodes=2, seed=10, progress=False, log=log)
    more = HoldPosePolicy()
    longer = evaluate(more, COUNTDOWN, episodes=4, seed=10, progress=False, log=log)
    assert more.reset_seeds == [12, 13]  # only the new seeds run
    assert longer.records[:2] == first.records
    header = json.loads(log.read_text().splitlines()[0])["header"]
    assert header["seeds"] == [10, 11, 12, 13]
    assert len(log.read_text().splitlines()) == 1 + 4
    fewer = HoldPosePolicy()
    again = evaluate(fewer, COUNTDOWN, episodes=3, seed=10, progress=False, log=log)
    assert fewer.reset_seeds == [] and again.records == longer.records[:3]


def test_an_episode_log_is_resumed_only_by_the_checkpoint_it_logged(tmp_path, capsys):
    checkpoint, log = tmp_path / "ckpt", tmp_path / "episodes.jsonl"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    (checkpoint / "model.safetensors").write_bytes(b"first weights")
    run = {"episodes": 2, "seed": 10, "progress": False, "log": log, "checkpoint": checkpoint}
    evaluate(HoldPosePolicy(), COUNTDOWN, **run)
    assert json.loads(log.read_text().splitlines()[0])["header"]["checkpoint_digest"]
    assert "resuming" not in capsys.readouterr().err
    again = HoldPosePolicy()
    evaluate(again, COUNTDOWN, **run)
    assert again.reset_seeds == []  # the same weights: every episode reused, and said so
    assert f"resuming 2 episodes from {log}" in capsys.readouterr().err
    (checkpoint / "model.safetensors").write_bytes(b"retrained weights")  # same name, new model
    with pytest.raises(ValueError, match="episodes of another checkpoint"):
        evaluate(HoldPosePolicy(), COUNTDOWN, **run)


def test_a_run_that_stops_before_its_first_episode_leaves_no_log(tmp_path):
    class RaisesAtOnce(HoldPosePolicy):
        def act(self, observation):
            raise ZeroDivisionError("bug")

    log = tmp_path / "episodes.jsonl"
    with pytest.raises(EvaluationError):
        evaluate(RaisesAtOnce(), COUNTDOWN, episodes=2, seed=10, progress=False, log=log)
    assert not log.exists()  # not a header-only log


def test_workers_give_the_records_of_one_process(tmp_path):
    local = evaluate(hold_pose_policy, COUNTDOWN, episodes=6, seed=20, progress=False)
    parallel = evaluate(hold_pose_policy, COUNTDOWN, episodes=6, seed=20, progress=False,
                        workers=2, log=tmp_path / "log.jsonl")
    key = [(r.seed, r.success, r.steps, r.error) for r in local.records]
    assert [(r.seed, r.success, r.steps, r.error) for r in parallel.records] == key
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 7
    with pytest.raises(ValueError, match="function that makes the policy"):
        evaluate(HoldPosePolicy(), COUNTDOWN, episodes=2, workers=2, progress=False)


# --- Faults ---------------------------------------------------------------------------------------


def test_an_environment_crash_fails_that_episode_and_the_run_goes_on():
    report = evaluate(HoldPosePolicy(), CRASHING, episodes=4, seed=10, progress=False,
                      env_kwargs={"crash_seed": 12})
    assert [r.error is None for r in report.records] == [True, True, False, True]
    crashed = report.records[2]
    assert crashed.success is False
    assert crashed.error == "step 0: environment crashed: RuntimeError('simulated solver blow-up')"
    assert report.summary()["errors"] == 1 and report.successes == 1  # seed 10 only


def test_a_policy_that_raises_stops_the_run_and_keeps_the_episodes_done(tmp_path):
    class RaisesOnSeed12(HoldPosePolicy):
        def act(self, observation):
            if self.reset_seeds[-1] == 12:
                raise ZeroDivisionError("bug")
            return super().act(observation)

    log = tmp_path / "log.jsonl"
    with pytest.raises(EvaluationError, match=r"seed 12, step 0: the policy raised "
                       r"ZeroDivisionError.*2 of 4 episodes had finished: they are in .*log"):
        evaluate(RaisesOnSeed12(), COUNTDOWN, episodes=4, seed=10, progress=False, log=log,
                 policy_name="p")
    assert [json.loads(line)["seed"] for line in log.read_text().splitlines()[1:]] == [10, 11]


def check_a_dying_worker_stops_the_run_and_the_rerun_resumes(tmp_path, message, **backend):
    """Seed 13 kills its worker once: the run stops with ``message`` and keeps every episode
    finished; the same run again completes, and the log has every episode exactly once."""
    die_once, log = tmp_path / "die-once", tmp_path / "log.jsonl"
    die_once.touch()
    run = dict(episodes=6, seed=10, env_kwargs={"crash_seed": 13, "die_once": str(die_once)},
               workers=2, log=log, progress=False, **backend)
    with pytest.raises(EvaluationError, match=message + r".*of 6 episodes had finished: "
                       r"they are in .*log\.jsonl"):
        evaluate(hold_pose_policy, CRASHING, **run)
    logged = [json.loads(line)["seed"] for line in log.read_text().splitlines()[1:]]
    assert 13 not in logged and len(logged) == len(set(logged))
    resumed = evaluate(hold_pose_policy, CRASHING, **run)
    assert [r.seed for r in resumed.records] == list(range(10, 16))
    assert all(r.error is None for r in resumed.records)
    logged = [json.loads(line)["seed"] for line in log.read_text().splitlines()[1:]]
    assert sorted(logged) == list(range(10, 16))  # every episode once: none lost, none twice


def test_a_worker_that_dies_stops_the_run_cleanly_and_the_rerun_resumes(tmp_path):
    # The seeds running when it died are named: 13, and the other worker's if it was busy.
    check_a_dying_worker_stops_the_run_and_the_rerun_resumes(
        tmp_path, r"worker process died .*while seed\(s\) (1[0-5], )?13(, 1[0-5])? were running")


# --- Videos ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("video_format", ["gif", "mp4"])
def test_videos_of_chosen_episodes(tmp_path, video_format):
    report = evaluate(HoldPosePolicy(), COUNTDOWN, episodes=4, seed=10, progress=False,
                      video_dir=tmp_path, video_episodes=[11], video_format=video_format)
    path = tmp_path / f"AEMTest_Countdown-v0_seed11.{video_format}"
    assert [r.video for r in report.records] == [None, str(path), None, None]
    frames = iio.imread(path)
    assert len(frames) == 1 + 5  # the first observation and one per step
    assert frames[0].mean() < frames[-1].mean()  # the frames brighten as the episode goes on


def test_videos_of_the_first_episodes_and_unknown_seeds(tmp_path):
    report = evaluate(HoldPosePolicy(), COUNTDOWN, episodes=3, seed=10, progress=False,
                      video_dir=tmp_path, video_episodes=2)
    assert [Path(r.video).name if r.video else None for r in report.records] == [
        "AEMTest_Countdown-v0_seed10.gif", "AEMTest_Countdown-v0_seed11.gif", None]
    with pytest.raises(ValueError, match=r"video seeds \[99\] are not among"):
        evaluate(HoldPosePolicy(), COUNTDOWN, episodes=3, seed=10, progress=False,
                 video_dir=tmp_path, video_episodes=[99])


class BuggyStepEnv(CountdownEnv):
    """Countdown whose step raises a ValueError on any action, as a bug in a simulator would."""

    def step(self, action):
        raise ValueError("math domain error")


BUGGY = "AEMTest/BuggyStep-v0"
gym.register(BUGGY, entry_point=BuggyStepEnv, max_episode_steps=5)


def test_a_value_error_from_the_environment_on_a_valid_action_is_its_crash():
    record = run_episode(gym.make(BUGGY), HoldPosePolicy(), seed=0)
    assert record.error == "step 0: environment crashed: ValueError('math domain error')"
    assert record.environment_crashed


@pytest.mark.parametrize("action, reason", [
    (np.full(16, np.nan), "action must be finite; NaN or inf at indices [0, 1,"),
    (np.zeros(7), "action must have shape (16,), got (7,)"),
    (np.array(["go"] * 16), "action must be numbers, got dtype <U2"),
])
def test_invalid_actions_are_the_policys_and_never_reach_the_environment(action, reason):
    # BuggyStepEnv raises on every step: an error naming the action shows step was not called.
    record = run_episode(gym.make(BUGGY), BadOnFirstEpisodePolicy(action), seed=0)
    assert record.error.startswith(f"step 0: action rejected: {reason}")
    assert not record.environment_crashed
