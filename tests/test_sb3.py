"""Stable-Baselines3 with zoo encoders: PPO and RecurrentPPO run on a task, the extractor gets the
camera's uint8 frames back from SB3's transposed, scaled images, PPO trains the encoder, and the
AEM wrapper's history vector is the one the encoder gives reading the episode whole.

One short ClickBell environment (32x32 camera, 16-step episodes so that episodes end inside the
rollouts) is shared by the module: the first render in a process costs ~10 s.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")
sb3_contrib = pytest.importorskip("sb3_contrib")

from policy_helpers import write_demos
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

import aem_bench  # noqa: F401 -- registers the tasks
from aem_bench.aem_history import AEMHistory, load_aem
from aem_bench.policies.pretraining import pretrain
from aem_bench.sb3 import ZooFeaturesExtractor, zoo_policy_kwargs

TASK, CAMERA = "AEM/ClickBell-v0", (32, 32)
TINY_RESNET = {"channels": [8, 16], "num_keypoints": 4, "feature_dim": 8}
SMALL_RUN = {"n_steps": 64, "batch_size": 32, "n_epochs": 2, "seed": 0, "device": "cpu"}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def vec_env():
    env = DummyVecEnv([lambda: gym.make(TASK, camera_size=CAMERA, max_episode_steps=16)])
    yield env
    env.close()


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def _changed(before: dict, module: torch.nn.Module) -> list[str]:
    return [name for name, value in module.state_dict().items()
            if not torch.equal(before[name], value)]


def test_ppo_trains_a_zoo_encoder_on_the_task(vec_env):
    model = PPO("MultiInputPolicy", vec_env, policy_kwargs=zoo_policy_kwargs(
        "resnet", TINY_RESNET), **SMALL_RUN)
    extractor = model.policy.features_extractor
    assert isinstance(extractor, ZooFeaturesExtractor) and extractor.channels_first
    assert extractor.features_dim == 8 + 16  # encoder features next to qpos
    before = _weights(extractor.encoder)
    model.learn(total_timesteps=128)
    assert model.num_timesteps == 128
    assert "out.weight" in _changed(before, extractor.encoder)  # gradients reached the encoder

    obs = model.get_env().reset()  # through PPO's VecTransposeImage: rgb (1, 3, H, W)
    assert obs["rgb"].shape == (1, 3, *CAMERA)
    tensors, _ = model.policy.obs_to_tensor(obs)
    processed = {key: value.float() / 255.0 if key == "rgb" else value.float()
                 for key, value in tensors.items()}
    frames = extractor.frames(processed["rgb"])
    # The extractor gets back exactly what the camera gave.
    np.testing.assert_array_equal(frames.numpy(), obs["rgb"].transpose(0, 2, 3, 1))
    assert extractor(processed).shape == (1, extractor.features_dim)


def test_recurrent_ppo_runs_with_a_zoo_encoder(vec_env):
    model = sb3_contrib.RecurrentPPO(
        "MultiInputLstmPolicy", vec_env,
        policy_kwargs={**zoo_policy_kwargs("resnet", TINY_RESNET), "lstm_hidden_size": 32},
        **SMALL_RUN)
    before = _weights(model.policy.features_extractor.encoder)
    model.learn(total_timesteps=128)
    assert model.num_timesteps == 128
    assert _changed(before, model.policy.features_extractor.encoder)
    action, state = model.predict(vec_env.reset(), state=None, episode_start=np.ones(1, bool))
    assert action.shape == (1, 16) and state[0].shape == (1, 1, 32)


@pytest.fixture(scope="module")
def aem_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("aem")
    demos = write_demos(root / "demos.h5", episodes=2, steps=12, size=32)
    pretrain(demos, root / "aem", steps=2, num_threads=1, progress=False,
             config_overrides={"window": 4, "encoder_options": TINY_RESNET, "d_model": 16,
                               "image_size": CAMERA})
    return root / "aem"


def test_aem_history_wrapper_gives_the_history_of_the_whole_episode(aem_run):
    env = AEMHistory(gym.make(TASK, camera_size=CAMERA, max_episode_steps=16), aem_run)
    observation, _ = env.reset(seed=0)
    frames, actions, vectors = [observation["rgb"]], [], [observation["aem_history"]]
    rng = np.random.default_rng(0)
    for _ in range(4):
        action = (observation["qpos"] + rng.normal(0, 0.01, 16)).astype(np.float32)
        observation, *_ = env.step(action)
        actions.append(action)
        frames.append(observation["rgb"])
        vectors.append(observation["aem_history"])
    assert env.observation_space["aem_history"].shape == (16,)
    # The same vectors as the encoder reading the episode in one go (training's way); the last
    # action is not read (the history at a frame has seen the actions before it).
    history = load_aem(aem_run).encoder
    with torch.inference_mode():
        features = history.encode_frames(torch.as_tensor(np.stack(frames)))
        taken = torch.as_tensor(np.stack([*actions, np.zeros(16, np.float32)]))
        whole = history.history(features[None], taken[None])[0]
    np.testing.assert_allclose(np.stack(vectors), whole.numpy(), rtol=1e-4, atol=1e-5)
    observation, _ = env.reset(seed=0)  # a new episode starts from an empty history
    np.testing.assert_allclose(observation["aem_history"], vectors[0], atol=1e-6)
    env.close()


def test_ppo_with_the_aem_encoder_and_history(aem_run):
    env = DummyVecEnv([lambda: AEMHistory(
        gym.make(TASK, camera_size=CAMERA, max_episode_steps=16), aem_run)])
    model = PPO("MultiInputPolicy", env, policy_kwargs=zoo_policy_kwargs(aem_checkpoint=aem_run),
                **SMALL_RUN)
    extractor = model.policy.features_extractor
    assert extractor.frozen and extractor.state_keys == ("aem_history", "qpos")  # gymnasium sorts keys
    assert extractor.features_dim == 8 + 16 + 16  # AEM vision, history, qpos
    before = _weights(extractor.encoder)
    model.learn(total_timesteps=64)
    assert _changed(before, extractor.encoder) == []
    env.close()


def test_bad_observation_spaces_and_crops_are_refused():
    box = gym.spaces.Box(0, 255, (32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="Dict observation space with an 'rgb' camera"):
        ZooFeaturesExtractor(box)
    space = gym.spaces.Dict({"rgb": box, "qpos": gym.spaces.Box(-1, 1, (16,), np.float32)})
    with pytest.raises(ValueError, match="crop_size 40 is larger than the 32x32 camera"):
        ZooFeaturesExtractor(space, encoder_options=TINY_RESNET, crop_size=40)
    with pytest.raises(ValueError, match=r"state_keys \['oracle'\] are not flat entries"):
        ZooFeaturesExtractor(space, encoder_options=TINY_RESNET, state_keys=("oracle",))
    extractor = ZooFeaturesExtractor(space, encoder_options=TINY_RESNET, normalized_images=False)
    assert not extractor.channels_first and not extractor.frozen
    frames = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    assert torch.equal(extractor.frames(frames.float()), frames)
