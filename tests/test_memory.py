"""The recurrent memory policy (gru-dp): run time equals training, batches of whole episodes, a
frame encoder taken from a trained policy, a memory that learns to keep a cue, and a readout of
the memory trained on the oracle."""

import json

import numpy as np
import pytest
import torch
from policy_helpers import fitted, observation, write_demos

from aem_bench.demos import DemoWriter, Episode
from aem_bench.policies import load_policy, make_policy
from aem_bench.policies.training import DemoWindows, EpisodeBatches, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"image_size": (32, 32), "crop_size": 28, "down_dims": (16, 32), "timestep_embed_dim": 16,
        "pred_horizon": 8, "action_steps": 4, "ema_decay": None, "memory_dim": 16, "memory_stride": 1}


def tiny_gru(**overrides):
    torch.manual_seed(0)
    return fitted(make_policy("gru-dp", **{**TINY, "encoder_options": {"channels": [8, 16]},
                                           **overrides}))


@pytest.mark.parametrize("stride", [1, 4])
def test_the_memory_at_run_time_is_the_memory_trained_on(stride):
    """act() advances the GRU one step at a time (every ``stride``-th) with the action it
    returned before; the training pass (memory_trace, the same code as compute_loss) reads the
    whole episode at once. Both must give the same memory at every step."""
    policy = tiny_gru(memory_stride=stride).eval()
    policy.reset(0)
    observations = [observation(32, seed=t) for t in range(9)]
    memories, actions = [], []
    for obs in observations:
        actions.append(policy.act(obs))
        memories.append(policy._memory_vector.clone())
    with torch.inference_mode():
        features = policy.encode(torch.from_numpy(np.stack([o["rgb"] for o in observations])))
    trace = policy.memory_trace(features, torch.from_numpy(np.stack([o["qpos"] for o in
                                                                     observations])),
                                torch.from_numpy(np.stack(actions)))
    torch.testing.assert_close(trace, torch.stack(memories), atol=1e-5, rtol=1e-4)


def test_episode_batches_hold_whole_episodes_and_their_chunks(tmp_path):
    write_demos(tmp_path / "demos.h5", episodes=3, steps=12)
    from aem_bench.demos import load_demos

    windows = DemoWindows(load_demos(tmp_path / "demos.h5"), 1, 8)
    windows.features = np.arange(len(windows), dtype=np.float32)[:, None].repeat(4, 1)
    batches = EpisodeBatches(windows, episodes=2, steps=10, seed=3)
    batch = batches(1)
    assert batch["features"].shape == (2, 12, 4) and batch["rows"].shape == (10, 2)
    rows = batch["features"][:, :, 0].long()  # the flat row of each (episode, step)
    assert (rows[:, 1:] - rows[:, :-1] == 1).all()  # consecutive steps of one episode
    assert (rows[:, 0] % 12 == 0).all()  # from the episode's first step
    # The previous action of step t is the action of step t-1.
    torch.testing.assert_close(batch["previous_actions"][:, 1:],
                               torch.from_numpy(windows.actions[rows[:, :-1].numpy()]))
    episode, step = batch["rows"].unbind(1)
    expected = windows.actions[windows.action_index[rows[episode, step].numpy()]]
    torch.testing.assert_close(batch["actions"], torch.from_numpy(expected))
    torch.testing.assert_close(batches(1)["rows"], batch["rows"])  # seeded: the same again


def assert_acts_as_saved(policy, path) -> None:
    """The policy saved at ``path``, loaded, acts as ``policy`` does on the same observations."""
    loaded = load_policy(path)
    obs = [observation(32, seed=t) for t in range(6)]
    for model in (policy, loaded):
        model.reset(4)
    np.testing.assert_array_equal([policy.act(o) for o in obs], [loaded.act(o) for o in obs])


def test_a_policy_takes_the_frozen_encoder_of_a_trained_checkpoint(tmp_path):
    write_demos(tmp_path / "demos.h5", episodes=2, steps=12)
    small = {k: v for k, v in TINY.items() if k not in ("image_size", "crop_size", "memory_dim")}
    source = train("singleframe-dp", tmp_path / "demos.h5", tmp_path / "sf", steps=3,
                   batch_size=4, config_overrides=small, progress=False)
    policy = train("gru-dp", tmp_path / "demos.h5", tmp_path / "gru", steps=3, batch_size=4,
                   config_overrides={**small, "memory_dim": 16,
                                     "encoder_checkpoint": str(tmp_path / "sf")},
                   progress=False)
    assert policy.frozen_encoder and policy.config.freeze_encoder
    for key, value in source.encoder.state_dict().items():
        torch.testing.assert_close(policy.encoder.state_dict()[key], value)
    assert_acts_as_saved(policy, tmp_path / "gru")


def test_a_recurrent_memory_needs_a_frozen_encoder():
    with pytest.raises(ValueError, match="frozen frame encoder"):
        make_policy("gru-dp", **TINY, freeze_encoder=False)


def cue_frame(cue: int, size: int = 32) -> np.ndarray:
    frame = np.full((size, size, 3), 128, dtype=np.uint8)
    columns = slice(2, 12) if cue else slice(size - 12, size - 2)
    frame[10:22, columns] = 255
    return frame


def cue_demos(path, episodes=16, steps=14, cue_at=0, act_from=10, size=32, oracle=False):
    """A memory task in miniature: frame ``cue_at`` shows a white square on the left or on the
    right (the cue), every other frame is the same grey, and from step ``act_from`` the expert's
    actions are +0.5 or -0.5 by the cue. Only a memory of that frame tells the late actions.
    ``oracle``: record the cue, one-hot, as every step's oracle."""
    rng = np.random.default_rng(0)
    with DemoWriter(path, "AEM/Test-v0") as writer:
        for i in range(episodes):
            cue = i % 2
            rgb = np.full((steps, size, size, 3), 128, dtype=np.uint8)
            rgb[cue_at] = cue_frame(cue, size)
            qpos = np.zeros((steps, 16), dtype=np.float32)
            actions = rng.normal(0, 0.01, (steps, 16)).astype(np.float32)
            actions[act_from:] += 0.5 if cue else -0.5
            label = np.eye(2, dtype=np.float32)[np.full(steps, cue)] if oracle else None
            writer.add(Episode(rgb, qpos, actions, seed=i, success=True, oracle=label))
    return path


@pytest.mark.slow
def test_the_memory_learns_to_keep_a_cue_that_only_the_first_frame_shows(tmp_path):
    cue_demos(tmp_path / "cue.h5")
    config = {**{k: v for k, v in TINY.items() if k not in ("image_size", "crop_size")},
              "encoder_options": {"channels": [8, 16]}, "lr": 3e-3, "lr_warmup_steps": 10}
    policy = train("gru-dp", tmp_path / "cue.h5", tmp_path / "gru", steps=500, batch_size=32,
                   config_overrides={**config, "episodes_per_batch": 8}, progress=False)
    grey = np.full((32, 32, 3), 128, dtype=np.uint8)
    late = {}
    for cue in (0, 1):
        policy.reset(0)
        frames = [cue_frame(cue)] + [grey] * 11
        actions = [policy.act({"rgb": f, "qpos": np.zeros(16, np.float32)}) for f in frames]
        late[cue] = float(np.mean(actions[10:]))
    assert late[1] > 0.25 and late[0] < -0.25, late


def test_state_noise_is_gaussian_in_normalised_units():
    policy = tiny_gru(memory_stride=1, state_noise=0.5)
    state = torch.zeros(4000, 16)
    noise = (policy.state_normalizer.normalize(
        policy._noisy_state(state, torch.Generator().manual_seed(0)))
        - policy.state_normalizer.normalize(state))
    assert abs(float(noise.std()) - 0.5) < 0.02 and abs(float(noise.mean())) < 0.02


# ----------------------------------------------------------------------------- memory readout


def test_a_readout_trains_on_the_oracle_and_the_head_reads_its_estimate(tmp_path):
    """``memory_readout``: the readout's loss is logged beside the head's, the head's condition
    holds the estimate (readout_dim wide) instead of the memory vector, and the saved policy
    acts as the trained one."""
    write_demos(tmp_path / "demos.h5", episodes=3, steps=12, oracle_size=3)
    small = {k: v for k, v in TINY.items() if k not in ("image_size", "crop_size")}
    policy = train("gru-dp", tmp_path / "demos.h5", tmp_path / "gru", steps=4, batch_size=4,
                   config_overrides={**small, "freeze_encoder": True,
                                     "encoder_options": {"channels": [8, 16]},
                                     "memory_readout": "oracle"},
                   log_every=1, progress=False)
    assert policy.config.readout_dim == 3 and policy.readout.out_features == 3
    log = (tmp_path / "gru" / "train_log.jsonl").read_text().splitlines()
    assert {"action_loss", "readout_loss"} <= set(json.loads(log[-1]))
    features = torch.zeros(2, 1, policy.encoder.feature_dim)
    cond = policy._global_cond(features, torch.zeros(2, 1, 16), torch.zeros(2, 16))
    assert cond.shape == (2, policy.encoder.feature_dim + 3 + 16)
    assert_acts_as_saved(policy, tmp_path / "gru")


def test_a_readout_must_estimate_something_the_policy_does_not_read():
    with pytest.raises(ValueError, match="pointless"):
        make_policy("gru-dp", **TINY, freeze_encoder=True, memory_readout="oracle",
                    readout_dim=3, state_keys=("qpos", "oracle"), state_dim=19)
    with pytest.raises(ValueError, match="needs a recurrent memory or an AEM history"):
        make_policy("singleframe-dp", memory_readout="oracle", readout_dim=3)


def test_readout_labels_outside_zero_one_are_refused(tmp_path):
    write_demos(tmp_path / "demos.h5", episodes=2, steps=12, oracle_size=3)
    from aem_bench.demos import load_demos
    from aem_bench.policies.training import readout_labels

    episode = load_demos(tmp_path / "demos.h5").episodes[0]
    episode.oracle = episode.oracle * 2.0
    with pytest.raises(ValueError, match=r"binary cross-entropy on labels in \[0, 1\]"):
        readout_labels(episode, "oracle")


@pytest.mark.slow
def test_a_readout_learns_the_cue_from_memory_and_the_head_acts_on_it(tmp_path):
    """The cue task with its label: the readout's estimate at the late steps, from memory alone
    (the frames are grey), names the cue, and the late actions follow it. The actions depend on
    the cue from step 1 on: the head reads the estimate instead of the memory vector, so it has
    no clock to tell a late step from an early one."""
    cue_demos(tmp_path / "cue.h5", act_from=1, oracle=True)
    config = {**{k: v for k, v in TINY.items() if k not in ("image_size", "crop_size")},
              "encoder_options": {"channels": [8, 16]}, "lr": 3e-3, "lr_warmup_steps": 10,
              "memory_readout": "oracle", "freeze_encoder": True}
    policy = train("gru-dp", tmp_path / "cue.h5", tmp_path / "gru", steps=500, batch_size=32,
                   config_overrides={**config, "episodes_per_batch": 8}, progress=False)
    grey = np.full((32, 32, 3), 128, dtype=np.uint8)
    for cue in (0, 1):
        policy.reset(0)
        frames = [cue_frame(cue)] + [grey] * 11
        actions = [policy.act({"rgb": f, "qpos": np.zeros(16, np.float32)}) for f in frames]
        with torch.inference_mode():
            estimate = torch.sigmoid(policy.readout(policy._memory_vector))
        assert int(estimate.argmax()) == cue, estimate
        assert float(np.mean(actions[4:])) * (1 if cue else -1) > 0.25
