"""AEM: masking, pretraining, the history at run time equal to the history in training, aem-dp."""

import json

import numpy as np
import pytest
import torch
from policy_helpers import (
    loss_ratio_after_training,
    observation,
    run_killed_then_resumed,
    write_demos,
)

from aem_bench.policies import CheckpointError, load_policy, make_policy
from aem_bench.policies.configuration_aem import ABLATIONS, AEMConfig, ablation
from aem_bench.policies.modeling_aem import AEMPretrainer, HistoryEncoder
from aem_bench.policies.pretraining import pretrain
from aem_bench.policies.training import train

ENCODER = {"channels": [8, 16], "num_keypoints": 4, "feature_dim": 8}
SMALL = {"window": 8, "encoder_options": ENCODER, "d_model": 32, "image_size": (32, 32)}
HEAD = {"crop_size": 28, "down_dims": (16, 32), "timestep_embed_dim": 16, "pred_horizon": 8,
        "action_steps": 4, "ema_decay": None}

pytestmark = pytest.mark.usefixtures("one_torch_thread")




@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A short pretraining run on random demonstrations: (demos file, checkpoint directory)."""
    root = tmp_path_factory.mktemp("aem")
    demos = write_demos(root / "demos.h5", episodes=2, steps=30)
    pretrain(demos, root / "aem", steps=4, config_overrides=SMALL, num_threads=1,
             progress=False)
    return demos, root / "aem"


def test_masks_cover_whole_steps_at_the_ratio_and_keep_the_last_frame():
    model = AEMPretrainer(AEMConfig(**SMALL, mask_ratio=0.7))
    masks = model.masks(64, model.config.window, torch.Generator().manual_seed(0))
    assert masks.shape == (64, 8)
    assert (masks.sum(1) == round(0.7 * 7)).all()
    assert not masks[:, -1].any()
    assert len({tuple(m.tolist()) for m in masks}) > 10  # drawn per sample


def model_and_fixed_batch(**settings):
    """A small pretraining model and a batch of 4 windows of random frames and smooth actions."""
    torch.manual_seed(0)
    model = AEMPretrainer(AEMConfig(**SMALL, **settings))
    rng = np.random.default_rng(0)
    actions = np.cumsum(rng.normal(0, 0.1, (4, 8, 16)), axis=1).astype(np.float32)
    model.encoder.action_normalizer.fit(actions.reshape(-1, 16))
    batch = {"rgb": torch.from_numpy(rng.integers(0, 256, (4, 8, 32, 32, 3), dtype=np.uint8)),
             "actions": torch.from_numpy(actions)}
    return model, batch


@pytest.mark.parametrize("use_actions", [True, False])
def test_pretraining_lowers_the_reconstruction_loss_on_a_fixed_batch(use_actions):
    model, batch = model_and_fixed_batch(use_actions=use_actions)
    with torch.no_grad():
        assert ("action" in model.compute_loss(batch)) == use_actions
    assert loss_ratio_after_training(model, batch, steps=40) < 0.7


def test_pretraining_writes_a_checkpoint_and_a_loss_curve(pretrained):
    _, run = pretrained
    model = load_policy(run)
    assert isinstance(model, AEMPretrainer) and model.config.window == 8
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [4] and {"vision", "action", "loss"} <= set(log[0])


def test_stepping_the_history_equals_reading_it_from_the_whole_sequence():
    torch.manual_seed(0)
    history = HistoryEncoder(AEMConfig(**SMALL), feature_dim=8).eval()
    history.action_normalizer.fit(torch.randn(50, 16))
    features, actions = torch.randn(2, 10, 8), torch.randn(2, 10, 16)
    full = history.history(features, actions)  # (2, 10, d)
    state = history.initial_state(2)
    for t in range(10):
        out, state = history.step(history.vision_token(features[:, t]), state)
        torch.testing.assert_close(out, full[:, t], rtol=1e-5, atol=1e-5)
        _, state = history.step(history.action_token(actions[:, t]), state)


@pytest.mark.parametrize("window", [None, 4])
def test_the_policy_at_run_time_sees_the_history_it_was_trained_on(pretrained, window, tmp_path):
    """Feed an aem-dp policy an episode; the history vectors it computes step by step equal the
    training-time computation over the same frames and the actions it took."""
    demos, run = pretrained
    overrides = {**HEAD, "aem_checkpoint": str(run), "history": {"inference_window": window}}
    policy = train("aem-dp", demos, tmp_path / "p", steps=2, batch_size=4,
                   config_overrides=overrides, num_threads=1, progress=False)
    policy.reset(0)
    seen, frames, taken = [], [], []
    for t in range(9):
        obs = observation(32, seed=t)
        frames.append(policy.encode(torch.from_numpy(obs["rgb"])[None])[0])
        taken.append(torch.from_numpy(policy.act(obs)))
        seen.append(policy._current_history_vector())
    features, actions = torch.stack(frames)[None], torch.stack(taken)[None]
    with torch.no_grad():
        if window is None:
            expected = policy.history.history(features, actions)[0]
        else:
            expected = torch.stack([
                policy.history.window_history(
                    torch.cat([features[:, :1].expand(1, max(0, 3 - t), -1),
                               features[:, max(0, t - 3) : t + 1]], 1),
                    torch.cat([actions[:, :1].expand(1, max(0, 3 - t), -1),
                               actions[:, max(0, t - 3) : t + 1]], 1),
                    torch.tensor([[False] * max(0, 3 - t) + [True] * min(4, t + 1)]))[0]
                for t in range(9)])
    torch.testing.assert_close(torch.stack(seen), expected, rtol=1e-4, atol=1e-5)


FROZEN = {"freeze_history": True}


@pytest.mark.parametrize("extra", [FROZEN, {**FROZEN, "history_fusion": "add"},
                                   {**FROZEN, "history_fusion": "memory_only"},
                                   {"pretrained_history": False,
                                    "history": {"inference_window": 4}},
                                   {}, {"pretrained_history": False}])
def test_aem_policies_train_save_and_load_to_identical_actions(pretrained, extra, tmp_path):
    demos, run = pretrained
    policy = train("aem-flow", demos, tmp_path / "p", steps=3, batch_size=4,
                   config_overrides={**HEAD, "aem_checkpoint": str(run), **extra},
                   num_threads=1, progress=False)
    loaded = load_policy(tmp_path / "p")
    outputs = []
    for p in (policy, loaded):
        p.reset(1)
        outputs.append(np.stack([p.act(observation(32, seed=t)) for t in range(6)]))
    np.testing.assert_array_equal(*outputs)
    pretrained_weights = load_policy(run).encoder.layers[0].mixer.A_log
    trained_with_head = extra.get("freeze_history") is not True  # fine-tuned by default
    # a frozen history keeps the pretrained Mamba; one trained with the head moves
    assert torch.equal(loaded.history.layers[0].mixer.A_log, pretrained_weights) == (
        not trained_with_head)


def test_aem_policies_name_what_is_missing(pretrained, tmp_path):
    demos, _ = pretrained
    with pytest.raises(ValueError, match="aem_checkpoint"):
        train("aem-dp", demos, tmp_path / "p", steps=1, config_overrides=HEAD, progress=False)
    other = tmp_path / "sf"
    train("singleframe-dp", demos, other, steps=1, batch_size=4, config_overrides={
        **HEAD, "encoder_options": ENCODER}, progress=False)
    with pytest.raises(ValueError, match="not of AEM pretraining"):
        train("aem-dp", demos, tmp_path / "p", steps=1,
              config_overrides={**HEAD, "aem_checkpoint": str(other)}, progress=False)
    with pytest.raises(CheckpointError, match="config.json"):
        train("aem-dp", demos, tmp_path / "p", steps=1,
              config_overrides={**HEAD, "aem_checkpoint": str(tmp_path / "nowhere")},
              progress=False)
    with pytest.raises(ValueError, match="reads either a window"):
        make_policy("aem-dp", history={}, pretrained_history=False)


def test_the_paper_is_an_ablation_and_the_defaults_are_the_measured_choice():
    from aem_bench.policies.configuration_aem import pretraining_run
    from aem_bench.policies.configuration_visuomotor import PolicyConfig

    paper = AEMConfig(**ablation("full", "pretrain"))
    assert (paper.window_start, paper.window, paper.future_actions) == ("random", 32, 0)
    assert ablation("full", "policy") == {"freeze_history": True}
    chosen = ablation("episode-causal-finetune", "pretrain")
    assert {key: getattr(AEMConfig(), key) for key in chosen} == chosen
    assert PolicyConfig().freeze_history == ablation("episode-causal-finetune",
                                                         "policy")["freeze_history"]
    # ablations that change only the downstream policy share their pretraining run
    assert {name: pretraining_run(name) for name in ABLATIONS} == {
        "full": "full", "no-actions": "no-actions", "no-pretraining": "full",
        "memory-only": "full", "feature-add": "full", "mask-0.5": "mask-0.5",
        "mask-0.9": "mask-0.9", "bottleneck": "bottleneck", "episode": "episode",
        "episode-bottleneck": "episode-bottleneck", "episode-causal": "episode-causal",
        "episode-causal-finetune": "episode-causal", "episode-no-pretraining": "episode-causal",
        "episode-causal-readout": "episode-causal",
        "episode-causal-finetune-readout": "episode-causal"}


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_every_ablation_is_a_valid_pair_of_settings(name):
    AEMConfig(**{**SMALL, **ablation(name, "pretrain")})
    policy_settings = ablation(name, "policy")
    history = {**AEMConfig(**SMALL).to_dict(), **policy_settings.pop("history", {})}
    # train() freezes the frame encoder of every AEM policy (the pretraining run's) and sizes a
    # memory readout from the demonstrations
    readout = {"readout_dim": 10} if "memory_readout" in policy_settings else {}
    make_policy("aem-dp", **HEAD, image_size=(32, 32), history=history, freeze_encoder=True,
                **policy_settings, **readout)


def test_pretraining_resumes_to_the_same_weights(tmp_path, monkeypatch, capsys):
    from aem_bench.policies import pretraining

    demos = write_demos(tmp_path / "demos.h5", episodes=2, steps=20)

    def run(out, resume=False):
        pretrain(demos, tmp_path / out, steps=4, config_overrides=SMALL, num_threads=1,
                 save_every=2, resume=resume, progress=False)

    run("straight")
    run_killed_then_resumed(monkeypatch, pretraining, 3,
                            lambda resume: run("resumed", resume=resume))
    assert (tmp_path / "resumed" / "model.safetensors").read_bytes() == \
        (tmp_path / "straight" / "model.safetensors").read_bytes()
    assert "no saved run" not in capsys.readouterr().err
    # A resume with nothing saved starts afresh, and says so.
    run("never_started", resume=True)
    assert f"no saved run in {tmp_path / 'never_started'}: starting afresh" in \
        capsys.readouterr().err
    assert (tmp_path / "never_started" / "model.safetensors").read_bytes() == \
        (tmp_path / "straight" / "model.safetensors").read_bytes()


def test_cli_pretrain_with_an_ablation(tmp_path, capsys):
    from aem_bench.cli import main

    demos = write_demos(tmp_path / "demos.h5", episodes=2, steps=20)
    config = json.dumps({k: v for k, v in SMALL.items() if k != "image_size"})
    assert main(["pretrain", "--demos", str(demos), "--out", str(tmp_path / "aem"), "--steps",
                 "2", "--threads", "1", "--ablation", "no-actions", "--config", config]) == 0
    assert load_policy(tmp_path / "aem").config.use_actions is False
    assert main(["pretrain", "--demos", str(demos), "--out", str(tmp_path / "x"), "--steps", "1",
                 "--ablation", "nope"]) != 0
    assert "unknown AEM ablation 'nope'" in capsys.readouterr().err


# ------------------------------------------------------------------------ long-memory options


def test_episode_windows_start_at_step_zero_and_span_the_shortest_episode(tmp_path):
    from aem_bench.demos import load_demos
    from aem_bench.policies.pretraining import StepWindows

    demos = load_demos(write_demos(tmp_path / "demos.h5", episodes=3, steps=20))
    demos.episodes[1] = type(demos.episodes[1])(*[getattr(demos.episodes[1], f)[:14] if f in (
        "rgb", "qpos", "actions") else getattr(demos.episodes[1], f)
        for f in ("rgb", "qpos", "actions", "seed", "success", "oracle")])
    windows = StepWindows(demos, 400, from_start=True)
    assert windows.rows.shape == (3, 14)  # one per episode, as long as the shortest
    np.testing.assert_array_equal(windows.rows[:, 0], [0, 20, 34])  # each episode's step 0
    assert StepWindows(demos, 8).rows.shape == (13 + 7 + 13, 8)  # the paper's: every start


@pytest.mark.parametrize("extra", [{"decoder_reads": "history", "future_actions": 0},
                                   {"future_actions": 4}])
def test_long_memory_options_train_on_a_fixed_batch(extra):
    model, batch = model_and_fixed_batch(**extra)
    with torch.no_grad():
        assert ("future" in model.compute_loss(batch)) == (extra["future_actions"] > 0)
    assert loss_ratio_after_training(model, batch, steps=40) < 0.8


def test_through_the_bottleneck_the_decoder_sees_only_the_history():
    """With decoder_reads="history", the decoder's input past the history vector is the same for
    two windows whose frames differ: nothing but the history reaches it. With "tokens" the
    visible steps' encoder outputs do."""
    for reads, alike in (("history", True), ("tokens", False)):
        torch.manual_seed(0)
        model = AEMPretrainer(AEMConfig(**SMALL, decoder_reads=reads)).eval()
        model.encoder.action_normalizer.fit(np.random.default_rng(0).normal(size=(8, 16)))
        captured = []
        hook = model.decoder.register_forward_hook(
            lambda m, i, o, captured=captured: captured.append(i[0]))
        rng = np.random.default_rng(1)
        rgb = torch.from_numpy(rng.integers(0, 256, (1, 8, 32, 32, 3), dtype=np.uint8))
        actions = torch.zeros(1, 8, 16)
        generator = torch.Generator().manual_seed(3)
        with torch.no_grad():
            model.compute_loss({"rgb": rgb, "actions": actions}, generator)
            generator.manual_seed(3)  # the same mask
            model.compute_loss({"rgb": 255 - rgb, "actions": actions}, generator)
        hook.remove()
        without_history = [x[:, 1:] for x in captured]  # the decoder input after the history
        assert torch.equal(*without_history) == alike


def test_pretraining_takes_the_frozen_encoder_of_a_trained_policy(tmp_path):
    demos = write_demos(tmp_path / "demos.h5", episodes=2, steps=12)
    source = train("singleframe-dp", demos, tmp_path / "sf", steps=2, batch_size=4,
                   config_overrides={**HEAD, "crop_size": None,
                                     "encoder_options": ENCODER}, progress=False)
    model = pretrain(demos, tmp_path / "aem", steps=2, num_threads=1, progress=False,
                     config_overrides={"window": 8, "d_model": 32,
                                       "encoder_checkpoint": str(tmp_path / "sf")})
    assert model.encoder.frozen_vision and model.vision_target == "features"
    for key, value in source.encoder.state_dict().items():
        torch.testing.assert_close(model.encoder.vision.state_dict()[key], value)
