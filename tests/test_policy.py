"""Fast checks of the single-frame Diffusion Policy: shapes, learning, checkpoints, training entry point.

The other policies of the zoo share all of this code; ``test_zoo.py`` checks each of them.

Most tests use a tiny configuration on 32x32 images so the whole file runs in well under a minute
on two CPU cores; the shape tests use the default sizes on 128x128 images.
"""

import json
import re

import numpy as np
import pytest
import torch
from policy_helpers import (
    fitted,
    fixed_batch,
    loss_ratio_after_training,
    observation,
    rollout,
    write_demos,
)

from aem_bench.demos import load_demos
from aem_bench.policies import (
    CheckpointError,
    load_policy,
    make_policy,
    save_policy,
)
from aem_bench.policies.configuration_visuomotor import PolicyConfig
from aem_bench.policies.encoders.resnet import ResNetEncoder
from aem_bench.policies.modeling_visuomotor import VisuomotorPolicy
from aem_bench.policies.training import DemoWindows, batch_rows, train
from aem_bench.policies.unet1d import ConditionalUnet1D

pytestmark = pytest.mark.usefixtures("one_torch_thread")




TINY = {
    "image_size": (32, 32),
    "crop_size": 28,
    "encoder_options": {"channels": (8, 16), "num_keypoints": 4, "feature_dim": 8},
    "down_dims": (16, 32),
    "timestep_embed_dim": 16,
    "pred_horizon": 8,
    "action_steps": 4,
    "ema_decay": None,
}


# ------------------------------------------------------------------------------------- shapes


def test_encoder_output_shape_in_train_and_eval_mode():
    encoder = ResNetEncoder()  # default sizes
    images = torch.randint(0, 256, (3, 116, 116, 3), dtype=torch.uint8)
    assert encoder.train()(images).shape == (3, encoder.feature_dim)
    assert encoder.eval()(images).shape == (3, encoder.feature_dim)
    with pytest.raises(TypeError, match="uint8"):
        encoder(images.float())


def test_resnet18_layout_is_one_option_away():
    encoder = ResNetEncoder(channels=(64, 128, 256, 512), blocks_per_stage=2)
    assert len(encoder.stages) == 8  # ResNet18: four stages of two basic blocks
    images = torch.randint(0, 256, (2, 116, 116, 3), dtype=torch.uint8)
    assert encoder(images).shape == (2, encoder.feature_dim)


def test_unet_output_shape_with_batched_and_scalar_timestep():
    config = PolicyConfig()
    unet = ConditionalUnet1D(16, 80, config.down_dims, config.kernel_size, config.n_groups)
    sample, cond = torch.randn(3, config.pred_horizon, 16), torch.randn(3, 80)
    assert unet(sample, torch.tensor([0, 5, 99]), cond).shape == sample.shape
    assert unet(sample, 7, cond).shape == sample.shape


def test_act_executes_the_first_action_steps_of_one_chunk():
    policy = fitted(make_policy("singleframe-dp")).eval()  # default sizes, 128x128 images
    steps = policy.config.action_steps
    obs = observation(128)
    policy.reset(3)
    actions, encoder_ms = [], []
    for _ in range(steps + 1):
        actions.append(policy.act(obs))
        encoder_ms.append(policy.last_encoder_ms)
    actions = np.stack(actions[:steps])
    assert actions.shape == (steps, 16) and actions.dtype == np.float32
    # The evaluator's encoder latency: timed on the calls that predict a chunk, None between.
    assert encoder_ms[0] > 0 and encoder_ms[steps] > 0
    assert encoder_ms[1:steps] == [None] * (steps - 1)

    # The same seed and observation give the chunk act() took its actions from (starting at t).
    batch = {
        "rgb": torch.from_numpy(obs["rgb"])[None, None],
        "state": torch.from_numpy(obs["qpos"])[None, None],
    }
    chunk = policy.predict_action_chunk(batch, torch.Generator().manual_seed(3))
    assert chunk.shape == (1, policy.config.pred_horizon, 16)
    np.testing.assert_allclose(actions, chunk[0, :steps].numpy(), atol=1e-5)


def test_unfitted_policy_refuses_to_act():
    policy = make_policy("singleframe-dp", **TINY).eval()
    with pytest.raises(RuntimeError, match="normalisation stats"):
        policy.act(observation(32))


def test_constant_dimensions_normalise_to_zero_and_back():
    policy = make_policy("singleframe-dp", **TINY)
    data = np.random.default_rng(0).normal(size=(20, 16)).astype(np.float32)
    data[:, 7] = 0.04
    policy.fit_normalization(data, data)
    normalised = policy.action_normalizer.normalize(torch.from_numpy(data))
    assert torch.isfinite(normalised).all() and normalised[:, 7].abs().max() == 0
    assert normalised.abs().max() <= 1 + 1e-6
    restored = policy.action_normalizer.unnormalize(normalised)
    np.testing.assert_allclose(restored.numpy(), data, atol=1e-6)


# ------------------------------------------------------------------------------------- learning


@pytest.mark.parametrize("prediction_type, ratio", [("sample", 0.5), ("epsilon", 0.9)])
def test_training_on_a_fixed_batch_lowers_the_loss(prediction_type, ratio):
    torch.manual_seed(0)
    policy = fitted(make_policy("singleframe-dp", **TINY, prediction_type=prediction_type))
    # sample: 0.25 -> 0.05, epsilon: 1.24 -> 0.98
    assert loss_ratio_after_training(policy.train(), fixed_batch(horizon=1), steps=30) < ratio


def test_demo_windows_pad_with_first_observation_and_last_action(tmp_path):
    demos = load_demos(write_demos(tmp_path / "demos.h5", episodes=2, steps=3))
    windows = DemoWindows(demos, obs_horizon=2, pred_horizon=4)
    assert len(windows) == 6
    np.testing.assert_array_equal(windows.obs_index[:3], [[0, 0], [0, 1], [1, 2]])
    np.testing.assert_array_equal(windows.action_index[2], [2, 2, 2, 2])
    np.testing.assert_array_equal(windows.action_index[3], [3, 4, 5, 5])  # second episode
    sample = windows.batch(np.array([4]))
    assert sample["rgb"].shape == (1, 2, 32, 32, 3) and sample["rgb"].dtype == torch.uint8
    np.testing.assert_array_equal(sample["actions"][0, 0].numpy(), demos.episodes[1].actions[1])


def test_batches_are_seeded_permutations_per_epoch():
    epoch0 = np.concatenate([batch_rows(step, 10, 3, seed=0) for step in (1, 2, 3)])
    assert len(set(epoch0)) == 9  # three batches of 3, no repeats, one sample left over
    np.testing.assert_array_equal(batch_rows(2, 10, 3, seed=0), batch_rows(2, 10, 3, seed=0))
    assert not np.array_equal(batch_rows(4, 10, 3, seed=0), batch_rows(1, 10, 3, seed=0))
    assert len(batch_rows(1, 2, 8, seed=0)) == 2  # data smaller than a batch: one short batch


# ------------------------------------------------------------------------------------- checkpoints


def test_save_then_load_gives_identical_actions(tmp_path):
    policy = fitted(make_policy("singleframe-dp", **TINY)).eval()
    save_policy(policy, tmp_path / "ckpt")
    loaded = load_policy(tmp_path / "ckpt")
    assert type(loaded) is VisuomotorPolicy and not loaded.training
    assert loaded.config == policy.config
    np.testing.assert_array_equal(rollout(loaded, seed=5), rollout(policy, seed=5))
    assert not np.array_equal(rollout(loaded, seed=5), rollout(loaded, seed=6))


def test_loading_weights_of_another_architecture_names_the_mismatch(tmp_path):
    save_policy(fitted(make_policy("singleframe-dp", **TINY)), tmp_path / "ckpt")
    config_path = tmp_path / "ckpt" / "config.json"
    config = json.loads(config_path.read_text())
    config["down_dims"] = [16, 48]
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="model.safetensors does not match") as err:
        load_policy(tmp_path / "ckpt")
    # The tensor and both shapes are named.
    assert re.search(
        r"tensor 'head\.unet\.\S+' has shape \(32,.*\) in the file but \(48,", str(err.value)
    )


def test_loading_a_corrupt_or_missing_checkpoint_raises_checkpoint_error(tmp_path):
    ckpt = save_policy(fitted(make_policy("singleframe-dp", **TINY)), tmp_path / "ckpt")
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_policy(ckpt)
    weights.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_policy(ckpt)
    weights.unlink()
    with pytest.raises(CheckpointError, match="no such file"):
        load_policy(ckpt)
    with pytest.raises(CheckpointError, match="config.json"):
        load_policy(tmp_path / "nowhere")


def test_loading_an_unknown_policy_type_or_key_raises_checkpoint_error(tmp_path):
    ckpt = save_policy(fitted(make_policy("singleframe-dp", **TINY)), tmp_path / "ckpt")
    config = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps({**config, "policy_type": "nope-dp"}))
    with pytest.raises(CheckpointError, match="unknown policy_type 'nope-dp'"):
        load_policy(ckpt)
    (ckpt / "config.json").write_text(json.dumps({**config, "unet_width": 3}))
    with pytest.raises(CheckpointError, match="unet_width"):
        load_policy(ckpt)


def test_config_round_trips_and_rejects_unknown_keys():
    config = PolicyConfig(down_dims=(16, 32))
    assert PolicyConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown keys \\['colour'\\]"):
        PolicyConfig.from_dict({"colour": "red"})
    with pytest.raises(ValueError, match="pred_horizon"):
        PolicyConfig(pred_horizon=10, down_dims=(8, 16, 32))
    with pytest.raises(ValueError, match="head must be one of"):
        PolicyConfig(head="gan")


# ------------------------------------------------------------------------------------- train()


def test_train_writes_a_loadable_checkpoint_deterministically(tmp_path):
    demos = write_demos(tmp_path / "demos.h5")
    overrides = {k: v for k, v in TINY.items() if k != "image_size"} | {"ema_decay": 0.9}
    runs = [
        train(
            "singleframe-dp",
            demos,
            tmp_path / f"run{i}",
            steps=4,
            batch_size=8,
            seed=0,
            config_overrides=overrides,
            num_threads=1,
            log_every=2,
            progress=False,
        )
        for i in range(2)
    ]
    for name in ("config.json", "model.safetensors", "train_log.jsonl"):
        assert (tmp_path / "run0" / name).is_file()
    log = [
        json.loads(line)
        for line in (tmp_path / "run0" / "train_log.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in log] == [2, 4] and all(np.isfinite(r["loss"]) for r in log)

    loaded = load_policy(tmp_path / "run0")
    assert loaded.config.batch_size == 8 and loaded.config.image_size == (32, 32)
    assert rollout(loaded, seed=1, steps=2).shape == (2, 16)
    np.testing.assert_array_equal(rollout(loaded, seed=1), rollout(runs[0], seed=1))
    np.testing.assert_array_equal(rollout(runs[0], seed=1), rollout(runs[1], seed=1))
    assert (tmp_path / "run0" / "model.safetensors").read_bytes() == (
        tmp_path / "run1" / "model.safetensors"
    ).read_bytes()


def test_oracle_policy_reads_qpos_and_oracle(tmp_path):
    """The memory tasks' control: the hidden fact joins qpos as the low-dimensional input."""
    demos = write_demos(tmp_path / "oracle.h5", oracle_size=3)
    policy = train("singleframe-dp", demos, tmp_path / "ckpt", steps=2, batch_size=4,
                   config_overrides={**TINY, "state_keys": ["qpos", "oracle"]}, progress=False)
    assert policy.config.state_dim == 16 + 3
    obs = {**observation(32), "oracle": np.array([0, 1, 0], dtype=np.float32)}
    policy.reset(0)
    assert policy.act(obs).shape == (16,)
    policy.reset(0)
    with pytest.raises(ValueError, match=r"\['oracle'\]"):
        policy.act(observation(32))
    # An oracle of another length (the task's oracle changed since the demos) is named, not
    # left to fail as a matrix product deep in the network.
    policy.reset(0)
    with pytest.raises(ValueError, match=r"length 19 .*'oracle': 4"):
        policy.act({**observation(32), "oracle": np.zeros(4, dtype=np.float32)})


def test_oracle_policy_refuses_demos_without_oracle(tmp_path):
    demos = write_demos(tmp_path / "plain.h5")
    with pytest.raises(ValueError, match="no 'oracle'"):
        train("singleframe-dp", demos, tmp_path / "ckpt", steps=1, batch_size=4,
              config_overrides={**TINY, "state_keys": ["qpos", "oracle"]}, progress=False)
