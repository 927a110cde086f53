"""`aem-bench probe`: the memory tasks' hidden facts and decision steps, the cross-validated
linear probe, SwapBlocks' pooled probe of the moves done, and the whole command on small real
datasets."""

import json

import gymnasium as gym
import numpy as np
import pytest

from aem_bench.cli import main
from aem_bench.demos import DemoWriter
from aem_bench.expert import expert_rollouts, run_expert
from aem_bench.policies.training import train
from aem_bench.probe import _probe_accuracy, moments_after_episode
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


def tiny_probe_dataset(root, env_id, seeds):
    """The expert's episodes of ``seeds`` at 32x32 with the oracle (``root/demos.h5``), a tiny
    single-frame DP on them (``root/sf``) and a gru-dp on its frozen encoder (``root/gru``), two
    training steps each."""
    kwargs = {"obs_mode": "rgb+oracle", "camera_size": (32, 32)}
    with DemoWriter(root / "demos.h5", env_id, kwargs) as writer:
        for result in expert_rollouts(env_id, seeds, record=True, **kwargs):
            writer.add(result.episode)
    tiny = {"down_dims": [16, 32], "timestep_embed_dim": 16, "pred_horizon": 8,
            "action_steps": 4, "ema_decay": None, "encoder_options": {"channels": [8, 16]}}
    train("singleframe-dp", root / "demos.h5", root / "sf", steps=2, batch_size=8,
          config_overrides=tiny, progress=False)
    train("gru-dp", root / "demos.h5", root / "gru", steps=2, batch_size=8,
          config_overrides={**tiny, "memory_dim": 8, "encoder_checkpoint": str(root / "sf")},
          progress=False)


@pytest.fixture(scope="module")
def shell_game(tmp_path_factory):
    """12 ShellGame demonstrations at 32x32 with the oracle, a tiny single-frame DP, and a
    gru-dp on its frozen encoder."""
    root = tmp_path_factory.mktemp("probe")
    tiny_probe_dataset(root, "AEM/ShellGame-v0", range(12))
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
    # The memory-swap test at the decision step: one row per episode.
    assert result["memory_use_rows"] == 12 and "memory-swap test" in printed
    for key in ("memory_use", "fact_use"):
        lo, hi = result[f"{key}_ci95"]
        assert 0.0 <= lo <= result[f"{key}_rate"] <= hi <= 1.0


def _swap_rows(directory, demos_path, step=8):
    """The tiny gru-dp of ``directory`` and its swap-test rows at ``step`` of every episode,
    labelled by episode parity."""
    import torch

    from aem_bench.demos import load_demos
    from aem_bench.memory_use import SwapRows
    from aem_bench.policies import load_policy

    policy = load_policy(directory)
    rows = SwapRows()
    for index, episode in enumerate(load_demos(demos_path).episodes):
        with torch.inference_mode():
            features = policy.encode(torch.from_numpy(episode.rgb))
        state = torch.from_numpy(episode.qpos.astype(np.float32))
        actions = torch.from_numpy(episode.actions.astype(np.float32))
        memory = policy.memory_trace(features, state, actions)
        rows.add(policy, features, state, memory, actions, step, index % 2, index)
    return policy, rows


def test_the_swap_test_tells_a_head_that_acts_on_its_memory_from_one_that_cannot(shell_game):
    import torch

    from aem_bench.memory_use import swap_test

    policy, rows = _swap_rows(shell_game / "gru", shell_game / "demos.h5")
    # The expert did exactly what the head does with its own memory (the test's noise): only a
    # head that reads the memory moves away from it when the memory is swapped.
    batch = {"features": torch.stack(rows.features), "state": torch.stack(rows.state),
             "memory_vector": torch.stack(rows.memory)}
    own = policy.predict_action_chunk(batch, torch.Generator().manual_seed(0))
    rows.expert = list(own[:, :policy.config.action_steps])
    used = swap_test(policy, rows, seed=0)
    assert used["memory_use_rate"] == 1.0 and used["own_memory_error_median"] < 1e-10
    assert used["other_fact_memory_error_median"] > 0
    # A memory that is its label alone (every row of a label the same vector): another episode's
    # memory of the same label is as good as its own, another label's is not.
    first = {label: rows.memory[rows.labels.index(label)] for label in set(rows.labels)}
    rows.memory = [first[label] for label in rows.labels]
    rows.expert = list(policy.predict_action_chunk(
        {**batch, "memory_vector": torch.stack(rows.memory)},
        torch.Generator().manual_seed(0))[:, :policy.config.action_steps])
    fact = swap_test(policy, rows, seed=0)
    assert fact["fact_use_rate"] == 1.0 and fact["same_fact_memory_error_median"] < 1e-10
    # Every row with the same memory vector: swapping changes nothing, both rates are one half.
    rows.memory = [rows.memory[0]] * len(rows.memory)
    unused = swap_test(policy, rows, seed=0)
    assert unused["memory_use_rate"] == 0.5 and unused["fact_use_rate"] == 0.5
    assert unused["own_memory_error_median"] == unused["other_fact_memory_error_median"]


def test_the_swap_test_needs_two_labels(shell_game):
    from aem_bench.memory_use import swap_test

    policy, rows = _swap_rows(shell_game / "gru", shell_game / "demos.h5")
    rows.labels = [0] * len(rows.labels)
    with pytest.raises(ValueError, match="at least two labels, each from at least two episodes"):
        swap_test(policy, rows)


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
    assert "memory_use_rate" not in result  # a pretraining run has no head to act on it


def test_a_policy_without_memory_is_refused(shell_game, capsys):
    code = main(["probe", "--policy", str(shell_game / "sf"), "--demos",
                 str(shell_game / "demos.h5"), "--out", str(shell_game / "refused")])
    assert code == 2
    assert "has no memory" in capsys.readouterr().err
    assert not (shell_game / "refused").exists()


SWAP = "AEM/SwapBlocks-v0"
SWAP_LAYOUTS = 6  # the red and the blue cube on two of three trays


def swap_seeds(per_layout: int) -> list[int]:
    """The first seeds that start each of SwapBlocks' 6 layouts ``per_layout`` times, so that
    every layout is as common after 0, 1 and 2 moves."""
    env = gym.make(SWAP, obs_mode="state")
    seeds, count = [], {}
    try:
        for seed in range(200):
            env.reset(seed=seed)
            layout = env.unwrapped.arrangements[0]
            if count.get(layout, 0) < per_layout:
                count[layout] = count.get(layout, 0) + 1
                seeds.append(seed)
            if len(seeds) == per_layout * SWAP_LAYOUTS:
                return seeds
    finally:
        env.close()
    raise AssertionError(f"200 seeds did not start every layout {per_layout} times")


@pytest.fixture(scope="module")
def swap_rows():
    """SwapBlocks' pooled probe rows for 12 expert episodes (each layout twice), with what the
    scene and the hand showed at each row's step."""
    env = gym.make(SWAP, obs_mode="state")
    task = env.unwrapped
    episodes = []
    try:
        for seed in swap_seeds(per_layout=2):
            seen, start = {}, {}

            def look(action, seen=seen, start=start):
                hand = task.arms["left"].tcp_pose.p.copy()
                start.setdefault("hand", hand)  # the first call is at step 0
                held = bool(task.grasping_arms(task.red) | task.grasping_arms(task.blue))
                seen[task.elapsed_steps] = {
                    "layout": (task._tray_under(task.red), task._tray_under(task.blue)),
                    "hand_from_start": float(np.linalg.norm(hand - start["hand"])),
                    "held": held}

            assert run_expert(env, seed, on_step=look).success
            marks = moments_after_episode(SWAP, task, seed)
            episodes.append({"marks": marks, "seen": seen, "plan": list(task.arrangements)})
    finally:
        env.close()
    return episodes


def test_swap_blocks_pools_the_moves_done_as_each_move_begins(swap_rows):
    for episode in swap_rows:
        rows, seen = episode["marks"].pooled, episode["seen"]
        assert [label for _, label in rows] == [0, 1, 2]
        steps = [step for step, _ in rows]
        assert steps[0] == 0 and steps[0] < steps[1] < steps[2]
        # Each move begins after the one before is done, with the hand back near its start
        # and no cube held: the scene shows a layout that starts other episodes.
        assert steps[1] > episode["marks"].steps["decision"]
        for step, label in rows:
            now = seen[step]
            assert now["layout"] == episode["plan"][label]
            assert len(set(now["layout"])) == 2 and None not in now["layout"]
            assert not now["held"] and now["hand_from_start"] < 0.05


def test_the_pooled_probe_reads_the_moves_done_from_a_memory_and_not_from_the_layout(
        swap_rows):
    layouts, labels, episode_index = [], [], []
    for index, episode in enumerate(swap_rows):
        for step, label in episode["marks"].pooled:
            red, blue = episode["seen"][step]["layout"]
            layouts.append(np.concatenate([np.eye(3)[red], np.eye(3)[blue]]))
            labels.append(label)
            episode_index.append(index)
    layouts, labels, groups = np.array(layouts), np.array(labels), np.array(episode_index)
    # Every layout is as common after 0, 1 and 2 moves: the frame's layout says nothing.
    assert len({(tuple(row), label) for row, label in zip(layouts, labels)}) == 3 * SWAP_LAYOUTS
    frame = _probe_accuracy(layouts, labels, folds=3, seed=0, groups=groups)
    assert frame.mean() <= 0.5  # chance is 1/3
    memory = np.concatenate([layouts, np.eye(3)[labels]], 1)
    assert _probe_accuracy(memory, labels, folds=3, seed=0, groups=groups).mean() > 0.95


@pytest.fixture(scope="module")
def swap_blocks(tmp_path_factory):
    """12 SwapBlocks demonstrations at 32x32 (each layout twice) and a tiny gru-dp on a tiny
    single-frame DP's frozen encoder."""
    root = tmp_path_factory.mktemp("swap-probe")
    tiny_probe_dataset(root, SWAP, swap_seeds(per_layout=2))
    return root


def test_swap_blocks_probe_reports_the_pooled_moves_done(swap_blocks, capsys):
    out = swap_blocks / "probes"
    assert main(["probe", "--policy", str(swap_blocks / "gru"), "--demos",
                 str(swap_blocks / "demos.h5"), "--out", str(out), "--folds", "3"]) == 0
    assert "moves_done_at_move_start" in capsys.readouterr().out
    result = json.loads((out / "SwapBlocks-v0_gru.json").read_text())
    assert result["step"] == "moves_done_at_move_start" and "moves done" in result["probed"]
    assert result["episodes"] == 12 and result["rows"] == 36
    assert result["step_median_by_label"] == {"0": 0.0, "1": 83.0, "2": 166.0}
    assert result["commonest_label_rate"] == pytest.approx(1 / 3)
    for key in ("probe", "frame_probe", "qpos_probe", "random_memory_probe"):
        lo, hi = result[f"{key}_ci95"]
        assert lo <= result[f"{key}_accuracy"] <= hi
        assert set(result[f"{key}_accuracy_by_label"]) == {"0", "1", "2"}
    # The hidden fact's moments are still probed, the pooled probe after them.
    assert [m["step"] for m in result["moments"]] == ["cue_visible", "cue_hidden", "midway",
                                                     "decision", "moves_done_at_move_start"]
    assert result["git_commit"] and "probe --policy" in result["command"]
    assert result["memory_use_rows"] == 36  # the swap test reads the pooled rows too
