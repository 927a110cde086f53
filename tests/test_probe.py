"""`aem-bench probe`: the memory tasks' hidden facts and decision steps, the cross-validated
linear probe, and the whole command on a small real dataset."""

import json

import gymnasium as gym
import numpy as np
import pytest

from aem_bench.cli import main
from aem_bench.demos import DemoWriter
from aem_bench.expert import expert_rollouts, run_expert
from aem_bench.policies.training import train
from aem_bench.probe import _probe_accuracy
from aem_bench.registration import TASKS

MEMORY_TASKS = sorted(env_id for env_id, spec in TASKS.items()
                      if spec.memory is not None and spec.scene == "clean")


@pytest.mark.parametrize("env_id", MEMORY_TASKS)
def test_every_memory_task_declares_its_fact_and_decision_step(env_id):
    env = gym.make(env_id, obs_mode="state")
    task = env.unwrapped
    facts = set()
    try:
        for seed in range(4):
            env.reset(seed=seed)
            assert task.decision_at is None  # not before the episode has run
            result = run_expert(env, seed)
            assert result.success
            fact = task.hidden_fact()
            assert isinstance(fact, int) and fact >= 0
            facts.add(fact)
            # The fact decides the action no earlier than the cue leaves the frame, and before
            # the episode ends.
            assert task.cue_hidden_at <= task.decision_at < result.steps
            env.reset(seed=seed)
            assert task.hidden_fact() == fact  # drawn at reset, from the seed
    finally:
        env.close()
    assert len(facts) >= 2, f"{env_id}: four seeds gave one value of the hidden fact"


def test_the_probe_reads_a_separable_fact_and_not_noise():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 30)
    separable = np.eye(4)[labels] * 3 + rng.normal(0, 0.5, (120, 4))
    noise = rng.normal(size=(120, 8))
    assert _probe_accuracy(separable, labels, folds=5, seed=0).mean() > 0.95
    assert _probe_accuracy(noise, labels, folds=5, seed=0).mean() < 0.45  # chance is 0.25


@pytest.fixture(scope="module")
def shell_game(tmp_path_factory):
    """12 ShellGame demonstrations at 32x32 with the oracle, a tiny single-frame DP, and a
    gru-dp on its frozen encoder."""
    root = tmp_path_factory.mktemp("probe")
    kwargs = {"obs_mode": "rgb+oracle", "camera_size": (32, 32)}
    with DemoWriter(root / "demos.h5", "AEM/ShellGame-v0", kwargs) as writer:
        for result in expert_rollouts("AEM/ShellGame-v0", range(12), record=True, **kwargs):
            writer.add(result.episode)
    tiny = {"down_dims": [16, 32], "timestep_embed_dim": 16, "pred_horizon": 8,
            "action_steps": 4, "ema_decay": None, "encoder_options": {"channels": [8, 16]}}
    train("singleframe-dp", root / "demos.h5", root / "sf", steps=2, batch_size=8,
          config_overrides=tiny, progress=False)
    train("gru-dp", root / "demos.h5", root / "gru", steps=2, batch_size=8,
          config_overrides={**tiny, "memory_dim": 8, "encoder_checkpoint": str(root / "sf")},
          progress=False)
    return root


def test_probe_writes_one_file_with_every_probe(shell_game, capsys):
    out = shell_game / "probes"
    assert main(["probe", "--policy", str(shell_game / "gru"), "--demos",
                 str(shell_game / "demos.h5"), "--out", str(out), "--folds", "3"]) == 0
    printed = capsys.readouterr().out
    assert "random memory" in printed and "decision" in printed
    result = json.loads((out / "ShellGame-v0_gru.json").read_text())
    assert result["task"] == "AEM/ShellGame-v0" and result["memory"] == "gru"
    assert result["episodes"] == 12 and result["step"] == "decision"
    assert [m["step"] for m in result["moments"]] == ["cue_visible", "cue_hidden", "midway",
                                                     "decision"]
    decision = result["moments"][-1]
    assert decision["step_median"] == 8  # the cups come down at step 8, the expert then moves
    for key in ("probe", "frame_probe", "qpos_probe", "random_memory_probe"):
        assert 0.0 <= result[f"{key}_accuracy"] <= 1.0
        lo, hi = result[f"{key}_ci95"]
        assert lo <= result[f"{key}_accuracy"] <= hi
    assert result["git_commit"] and "probe --policy" in result["command"]


def test_an_aem_pretraining_run_is_probed_as_the_history_it_gives(shell_game):
    from aem_bench.policies.pretraining import pretrain

    pretrain(shell_game / "demos.h5", shell_game / "aem", steps=2, num_threads=1, progress=False,
             config_overrides={"window": 8, "d_model": 16,
                               "encoder_checkpoint": str(shell_game / "sf")})
    out = shell_game / "aem-probes"
    assert main(["probe", "--policy", str(shell_game / "aem"), "--demos",
                 str(shell_game / "demos.h5"), "--out", str(out), "--folds", "3"]) == 0
    result = json.loads((out / "ShellGame-v0_aem.json").read_text())
    assert result["memory"] == "aem" and result["policy_type"] == "aem-pretrain"
    assert result["random_memory_probe_accuracy"] is not None


def test_a_policy_without_memory_is_refused(shell_game, capsys):
    code = main(["probe", "--policy", str(shell_game / "sf"), "--demos",
                 str(shell_game / "demos.h5"), "--out", str(shell_game / "refused")])
    assert code == 2
    assert "has no memory" in capsys.readouterr().err
    assert not (shell_game / "refused").exists()
