"""Every policy of the zoo, each encoder and each head: shapes, learning, checkpoints, errors.

No model hub is reachable here, so the pretrained encoders are built small and random through the
same code that loads their weights (``weights="random"``, or a weights file written by the test).
"""

import json
import shutil

import numpy as np
import pytest
import torch
from policy_helpers import (
    fitted,
    fixed_batch,
    loss_ratio_after_training,
    observation,
    rollout,
    run_killed_then_resumed,
    write_demos,
)
from safetensors.torch import save_file

from aem_bench.policies import (
    POLICIES,
    CheckpointError,
    PolicyConfig,
    load_policy,
    make_policy,
    save_policy,
)
from aem_bench.policies.encoders import ENCODERS, make_encoder
from aem_bench.policies.encoders.weights import MissingWeightsError, read_state_dict
from aem_bench.policies.training import train

CLIP_TEXT = {"width": 32, "layers": 1, "heads": 2, "context_length": 8, "vocab_size": 100}
TINY_ENCODERS = {
    "resnet": {"channels": [8, 16], "num_keypoints": 4, "feature_dim": 8},
    "dinov2": {"weights": "random", "input_size": 28,
               "model_kwargs": {"depth": 1, "embed_dim": 32, "num_heads": 2}},
    "clip": {"weights": "random", "model_kwargs": {
        "embed_dim": 16, "text_cfg": CLIP_TEXT,
        "vision_cfg": {"width": 32, "layers": 1, "patch_size": 16, "image_size": 32,
                       "head_width": 16}}},
    "r3m": {"weights": "random", "depth": 18, "input_size": 32},
}
TINY = {"image_size": (32, 32), "crop_size": 28, "down_dims": (16, 32), "timestep_embed_dim": 16,
        "pred_horizon": 8, "action_steps": 4, "ema_decay": None}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# The AEM policies need a pretraining run (test_aem.py checks them the same way), the recurrent
# memory trains on whole episodes (test_memory.py).
FRAME_POLICIES = sorted(name for name, defaults in POLICIES.items()
                        if "history" not in defaults and "memory" not in defaults)


def tiny(name: str, **overrides):
    encoder = POLICIES[name]["encoder"]
    torch.manual_seed(0)
    return make_policy(name, **{**TINY, "encoder_options": TINY_ENCODERS[encoder], **overrides})




def test_the_zoo_has_every_encoder_under_both_heads():
    assert sorted(POLICIES) == sorted(f"{e}-{h}" for e in
                                      ("singleframe", "framestack", "dinov2", "clip", "r3m", "aem",
                                       "gru")
                                      for h in ("dp", "flow"))
    assert PolicyConfig.from_dict(POLICIES["framestack-dp"]).obs_horizon == 8
    assert set(ENCODERS) == {"resnet", "dinov2", "clip", "r3m"}


# ------------------------------------------------------------------------------------- per policy


@pytest.mark.parametrize("name", FRAME_POLICIES)
def test_shapes_and_receding_horizon(name):
    policy = fitted(tiny(name)).eval()
    config = policy.config
    assert policy.frozen_encoder == (config.encoder != "resnet")
    obs = observation(32)
    policy.reset(0)
    actions = np.stack([policy.act(obs) for _ in range(config.action_steps + 1)])
    assert actions.shape == (config.action_steps + 1, 16) and actions.dtype == np.float32
    assert np.isfinite(actions).all()
    batch = {"rgb": torch.from_numpy(obs["rgb"])[None, None].expand(2, config.obs_horizon,
                                                                    -1, -1, -1),
             "state": torch.from_numpy(obs["qpos"])[None, None].expand(2, config.obs_horizon, -1)}
    assert policy.predict_action_chunk(batch).shape == (2, config.pred_horizon, 16)


@pytest.mark.parametrize("name", FRAME_POLICIES)
def test_training_on_a_fixed_batch_lowers_the_loss(name):
    policy = fitted(tiny(name)).train()
    frozen = {k: v.clone() for k, v in policy.encoder.state_dict().items()}
    ratio = loss_ratio_after_training(policy, fixed_batch(policy.config.obs_horizon), steps=60)
    # Measured after 60 steps: 0.11-0.20 of the first loss for the diffusion head ("sample"
    # prediction), 0.71-0.81 for flow, whose target x1 - x0 holds the noise it cannot predict.
    assert ratio < (0.5 if policy.config.head == "diffusion" else 0.9)
    if policy.frozen_encoder:  # a frozen encoder did not move
        for key, value in policy.encoder.state_dict().items():
            torch.testing.assert_close(value, frozen[key])


@pytest.mark.parametrize("name", FRAME_POLICIES)
def test_save_then_load_gives_identical_actions(name, tmp_path):
    policy = fitted(tiny(name)).eval()
    save_policy(policy, tmp_path / "ckpt")
    loaded = load_policy(tmp_path / "ckpt")
    assert loaded.config == policy.config
    np.testing.assert_array_equal(rollout(loaded, seed=5), rollout(policy, seed=5))


@pytest.mark.parametrize("name, other", [("singleframe-dp", "framestack-dp"),
                                         ("dinov2-dp", "clip-dp"), ("r3m-flow", "dinov2-flow"),
                                         ("clip-flow", "singleframe-flow")])
def test_weights_of_another_architecture_are_refused_by_name(name, other, tmp_path):
    save_policy(fitted(tiny(name)), tmp_path / "ckpt")
    save_policy(fitted(tiny(other)), tmp_path / "other")
    shutil.copy(tmp_path / "other" / "model.safetensors", tmp_path / "ckpt" / "model.safetensors")
    with pytest.raises(CheckpointError, match=f"does not match .*'{name}'.*tensor"):
        load_policy(tmp_path / "ckpt")


def test_a_pretrained_encoder_can_be_fine_tuned():
    policy = tiny("r3m-dp", freeze_encoder=False).train()
    assert not policy.frozen_encoder and policy.encoder.training
    assert all(p.requires_grad for p in policy.encoder.parameters())
    frozen = tiny("r3m-dp").train()
    assert frozen.frozen_encoder and not frozen.encoder.training  # eval mode even in training
    assert not any(p.requires_grad for p in frozen.encoder.parameters())


def test_robotwin_horizons_execute_six_of_eight_predicted_actions():
    policy = fitted(tiny("singleframe-dp", obs_horizon=3, pred_horizon=8, action_steps=6)).eval()
    policy.reset(0)
    for t in range(7):
        policy.act(observation(32, seed=t))
        assert len(policy._actions) == (5 - t) % 6  # a new chunk of 6 at steps 0 and 6
    assert len(policy._observations) == 3


# ------------------------------------------------------------------------------------- heads


@pytest.mark.parametrize("steps", [1, 3, 10])
def test_flow_samples_with_any_number_of_euler_steps(steps):
    policy = fitted(tiny("singleframe-flow", num_inference_steps=steps)).eval()
    assert rollout(policy, seed=0, steps=2).shape == (2, 16)


def test_flow_consistency_loss_adds_to_the_flow_loss():
    plain = fitted(tiny("singleframe-flow"))
    consistent = fitted(tiny("singleframe-flow", consistency_weight=1.0))
    consistent.load_state_dict(plain.state_dict())
    rng = np.random.default_rng(0)
    batch = {"rgb": torch.from_numpy(rng.integers(0, 256, (4, 1, 32, 32, 3), dtype=np.uint8)),
             "state": torch.zeros(4, 1, 16), "actions": torch.rand(4, 8, 16) * 2 - 1}
    with torch.no_grad():
        base = plain.compute_loss(batch, torch.Generator().manual_seed(0))
        total = consistent.compute_loss(batch, torch.Generator().manual_seed(0))
    assert total > base


def test_config_rejects_bad_head_settings():
    with pytest.raises(ValueError, match="num_inference_steps"):
        PolicyConfig(num_inference_steps=200)  # more DDIM steps than training steps
    PolicyConfig(head="flow", num_inference_steps=200)  # flow has no such bound
    with pytest.raises(ValueError, match="consistency"):
        PolicyConfig(head="flow", consistency_weight=-1)


# ------------------------------------------------------------------------------------- encoders


def _features(encoder, seed=0):
    images = torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (2, 28, 28, 3),
                                                                    dtype=np.uint8))
    with torch.no_grad():
        return encoder.eval()(images)


@pytest.mark.parametrize("name", ["dinov2", "clip", "r3m"])
def test_pretrained_weights_load_from_a_file(name, tmp_path):
    torch.manual_seed(1)
    source = make_encoder(name, **TINY_ENCODERS[name])
    file = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in source.model.state_dict().items()}, file)
    torch.manual_seed(2)
    loaded = make_encoder(name, **{**TINY_ENCODERS[name], "weights": str(file)})
    torch.testing.assert_close(_features(loaded), _features(source))
    assert loaded.fingerprint() != make_encoder(name, **TINY_ENCODERS[name]).fingerprint()


def test_r3m_reads_r3m_checkpoints_and_clip_reads_whole_clip_models(tmp_path):
    r3m = make_encoder("r3m", **TINY_ENCODERS["r3m"])
    checkpoint = {"r3m": {**{f"module.convnet.{k}": v for k, v in r3m.model.state_dict().items()},
                          "module.lang_enc.weight": torch.zeros(3)}}
    torch.save(checkpoint, tmp_path / "model.pt")
    again = make_encoder("r3m", **{**TINY_ENCODERS["r3m"], "weights": str(tmp_path / "model.pt")})
    torch.testing.assert_close(_features(again), _features(r3m))

    clip = make_encoder("clip", **TINY_ENCODERS["clip"])
    whole = {**{f"visual.{k}": v for k, v in clip.model.state_dict().items()},
             "token_embedding.weight": torch.zeros(100, 32)}
    torch.save(whole, tmp_path / "open_clip_pytorch_model.bin")
    again = make_encoder("clip", **{**TINY_ENCODERS["clip"],
                                    "weights": str(tmp_path / "open_clip_pytorch_model.bin")})
    torch.testing.assert_close(_features(again), _features(clip))


def test_weights_of_another_size_are_refused_by_tensor(tmp_path):
    small = make_encoder("dinov2", **TINY_ENCODERS["dinov2"])
    save_file({k: v.contiguous() for k, v in small.model.state_dict().items()},
              tmp_path / "w.safetensors")
    wider = {**TINY_ENCODERS["dinov2"], "weights": str(tmp_path / "w.safetensors"),
             "model_kwargs": {"depth": 1, "embed_dim": 48, "num_heads": 2}}
    with pytest.raises(ValueError, match=r"w.safetensors does not fit.*'blocks.0.attn.proj.bias' is \(32,\), the model has \(48,\)"):
        make_encoder("dinov2", **wider)


class NotATensor:  # a pickle that would run code on load
    def __reduce__(self):
        return (print, ("this must not run",))


def test_pickles_of_code_are_refused(tmp_path):
    torch.save({"x": NotATensor()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="not loadable as plain tensors"):
        read_state_dict(tmp_path / "evil.pt")


def test_a_damaged_safetensors_weights_file_is_named(tmp_path):
    from aem_bench.errors import InputError

    save_file({"x": torch.zeros(64)}, tmp_path / "w.safetensors")
    damaged = tmp_path / "w.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:40])  # cut short
    with pytest.raises(InputError, match=r"w\.safetensors: not a readable safetensors file"):
        read_state_dict(damaged)


@pytest.mark.parametrize("name", ["dinov2", "clip", "r3m"])
def test_missing_weights_name_where_to_put_them(name, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HOME", str(tmp_path))  # R3M's cache is ~/.r3m
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    options = {k: v for k, v in TINY_ENCODERS[name].items() if k != "weights"}
    with pytest.raises(MissingWeightsError, match="no pretrained weights.*looked in.*weights=PATH"):
        make_encoder(name, **options)
    with pytest.raises(MissingWeightsError, match="nowhere.pt does not exist"):
        make_encoder(name, **options, weights=str(tmp_path / "nowhere.pt"))


def test_cli_train_without_weights_says_where_to_put_them(tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants

    from aem_bench.cli import main

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    demos = write_demos(tmp_path / "demos.h5")
    code = main(["train", "--policy", "dinov2-dp", "--demos", str(demos), "--out",
                 str(tmp_path / "run"), "--steps", "1", "--threads", "1"])
    assert code != 0
    assert "Hugging Face cache" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- training


def test_frozen_features_are_computed_once_per_encoder_and_data(tmp_path, monkeypatch):
    monkeypatch.setenv("AEM_CACHE_DIR", str(tmp_path / "cache"))
    demos = write_demos(tmp_path / "demos.h5")
    options = {**TINY, "encoder_options": TINY_ENCODERS["dinov2"]}
    calls = []
    original = ENCODERS["dinov2"].forward
    monkeypatch.setattr(ENCODERS["dinov2"], "forward",
                        lambda self, images: calls.append(len(images)) or original(self, images))

    def run(out, demos_path=demos, seed=0):
        calls.clear()
        train("dinov2-dp", demos_path, tmp_path / out, steps=2, batch_size=4, seed=seed,
              config_overrides=options, num_threads=1, progress=False)
        return sum(calls)

    assert run("a") == 24  # every frame once (2 episodes x 12 steps), none per step
    assert run("b") == 0  # cached
    assert len(list((tmp_path / "cache" / "features").glob("*.npy"))) == 1
    assert run("c", demos_path=write_demos(tmp_path / "other.h5", seed=1)) == 24  # new data
    assert run("d", seed=3) == 24  # new random weights: another encoder
    assert len(list((tmp_path / "cache" / "features").glob("*.npy"))) == 3
    # A damaged cache file is named, not silently computed again.
    cached = sorted((tmp_path / "cache" / "features").glob("*.npy"))
    for path in cached:
        path.write_bytes(b"garbage")
    from aem_bench.errors import InputError

    with pytest.raises(InputError, match=r"\.npy: damaged cache of encoder features.*delete it"):
        run("e")


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    from aem_bench.policies import training

    demos = write_demos(tmp_path / "demos.h5")
    options = {**{k: v for k, v in TINY.items() if k != "image_size"}, "ema_decay": 0.9,
               "encoder_options": TINY_ENCODERS["resnet"]}

    def run(out, resume=False):
        return train("singleframe-flow", demos, tmp_path / out, steps=6, batch_size=4,
                     config_overrides=options, num_threads=1, log_every=2, save_every=2,
                     resume=resume, progress=False)

    run("straight")
    run_killed_then_resumed(monkeypatch, training, 5,
                            lambda resume: run("resumed", resume=resume))
    for name in ("model.safetensors", "training/raw.safetensors"):
        assert (tmp_path / "resumed" / name).read_bytes() == \
            (tmp_path / "straight" / name).read_bytes(), name
    log = [json.loads(line) for line in
           (tmp_path / "resumed" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4, 6]

    with pytest.raises(ValueError, match="other settings"):
        train("singleframe-flow", demos, tmp_path / "resumed", steps=8, batch_size=8,
              config_overrides=options, resume=True, progress=False)
    with pytest.raises(ValueError, match="holds a run of 'singleframe-flow'"):
        train("singleframe-dp", demos, tmp_path / "resumed", steps=8, resume=True,
              config_overrides=options, progress=False)


# --- a damaged saved run: named, with how to recover, never a bare JSONDecodeError -----------------
def _cut_short(path):
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


@pytest.mark.parametrize(("damage", "file", "says"), [
    (_cut_short, "config.json", "damaged (cut short"),
    (lambda path: path.write_text("garbage"), "config.json", "damaged (not JSON"),
    (lambda path: path.write_text("[1, 2]"), "config.json", "not a JSON object"),
    (_cut_short, "training/state.pt", "damaged, the saved run cannot be resumed"),
    (lambda path: path.write_bytes(b"garbage"), "training/state.pt", "damaged"),
    # A line that is not the last: not a kill's doing.
    (lambda path: path.write_text('{"step": 1\n' + path.read_text()), "train_log.jsonl",
     "train_log.jsonl:1: not a training log entry"),
])
def test_a_damaged_saved_run_is_named_with_how_to_recover(damage, file, says, tmp_path):
    from aem_bench.errors import InputError

    demos = write_demos(tmp_path / "demos.h5")
    run = tmp_path / "run"

    def train_it(resume):
        return train("singleframe-dp", demos, run, steps=3, batch_size=4, config_overrides=TINY,
                     num_threads=1, log_every=1, save_every=2, resume=resume, progress=False)

    train_it(resume=False)
    damage(run / file)
    before = {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}
    with pytest.raises(InputError) as refused:
        train_it(resume=True)
    message = str(refused.value)
    assert message.startswith(str(run / file)) and says in message, message
    assert f"move {run} away" in message, message
    if file != "train_log.jsonl":  # refused before anything is written
        assert {path: path.read_bytes() for path in run.rglob("*") if path.is_file()} == before


def test_a_training_log_line_cut_short_by_a_kill_is_dropped_on_resume(tmp_path):
    """The log line of a step is written before that step is saved: a line cut short is of a
    step after the saved one, trained again."""
    demos = write_demos(tmp_path / "demos.h5")
    run = tmp_path / "run"

    def train_it(steps, resume):
        return train("singleframe-dp", demos, run, steps=steps, batch_size=4,
                     config_overrides=TINY, num_threads=1, log_every=1, save_every=2,
                     resume=resume, progress=False)

    train_it(2, resume=False)
    log = run / "train_log.jsonl"
    log.write_text(log.read_text() + '{"step": 3, "lo')
    train_it(4, resume=True)
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2, 3, 4]


def test_a_damaged_recipe_is_named_before_the_evaluation(tmp_path):
    from aem_bench.checkpoint_eval import evaluate_checkpoint
    from aem_bench.errors import InputError

    demos = write_demos(tmp_path / "demos.h5")
    run = tmp_path / "run"
    train("singleframe-dp", demos, run, steps=1, batch_size=4, config_overrides=TINY,
          num_threads=1, progress=False)
    _cut_short(run / "recipe.json")
    with pytest.raises(InputError, match=r"recipe\.json: damaged \(cut short.*move it away"):
        evaluate_checkpoint(run, "AEM/ShellGame-v0", episodes=1, seed=100_000, progress=False,
                            log=tmp_path / "log.jsonl")
    assert not (tmp_path / "log.jsonl").exists()
