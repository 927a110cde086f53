"""A gymnasium wrapper that adds the history vector of a pretrained AEM encoder to the observation.

Why: reinforcement learning libraries hand a policy one observation at a time and keep no record
of the actions taken, while AEM's ``HistoryEncoder`` reads the frames interleaved with the
actions executed since the episode began. The environment sees both, so the wrapper runs the
frozen encoder there, as an ``aem-*`` policy does at run time: one Mamba step per token
(recurrent, ``inference_window`` None) or the last ``inference_window`` steps re-read (windowed),
reset with the episode. Any SB3 algorithm then gets AEM's memory as ``observation["aem_history"]``
(d_model floats), plain PPO included, and the rollout buffer stores one vector per step instead
of a window of frames.
"""

from __future__ import annotations

import os
from collections import deque

import gymnasium as gym
import numpy as np
import torch

HISTORY_KEY = "aem_history"


def load_aem(checkpoint: str | os.PathLike):
    """The AEMPretrainer of an ``aem-bench pretrain`` run, in eval mode."""
    from aem_bench.policies import load_policy
    from aem_bench.policies.modeling_aem import AEMPretrainer

    aem = load_policy(checkpoint)
    if not isinstance(aem, AEMPretrainer):
        raise ValueError(  # noqa: TRY004 -- bad input, reported as such
            f"{checkpoint} is a checkpoint of '{aem.config.policy_type}', not of AEM pretraining")
    return aem.eval()


class AEMHistory(gym.Wrapper):
    """Adds ``"aem_history"``: the frozen AEM history vector at the current frame, having read
    every frame and executed action of the episode so far (or of the last ``inference_window``
    steps). The camera must have the pretraining image size."""

    def __init__(self, env: gym.Env, checkpoint: str | os.PathLike, image_key: str = "rgb"):
        super().__init__(env)
        self.history = load_aem(checkpoint).encoder
        self.history.requires_grad_(False)
        config = self.history.config
        camera = env.observation_space[image_key].shape[:2]
        if tuple(config.image_size) != tuple(camera):
            raise ValueError(f"{checkpoint} was pretrained on {tuple(config.image_size)} images, "
                             f"the camera gives {tuple(camera)}: make the environment with "
                             f"camera_size={tuple(config.image_size)}")
        self.image_key = image_key
        self.window = config.inference_window  # None: recurrent over the whole episode
        self.observation_space = gym.spaces.Dict({
            **env.observation_space.spaces,
            HISTORY_KEY: gym.spaces.Box(-np.inf, np.inf, (config.d_model,), np.float32),
        })

    def reset(self, **kwargs):
        observation, info = self.env.reset(**kwargs)
        self._state = self.history.initial_state(1) if self.window is None else None
        self._steps: deque[dict] = deque(maxlen=self.window)
        return self._observe(observation, None), info

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        executed = torch.as_tensor(np.asarray(action, dtype=np.float32))[None]
        return self._observe(observation, executed), reward, terminated, truncated, info

    @torch.inference_mode()
    def _observe(self, observation: dict, executed: torch.Tensor | None) -> dict:
        """Read the action executed since the last frame (None at reset) and the new frame."""
        rgb = torch.as_tensor(np.ascontiguousarray(observation[self.image_key]))[None]
        features = self.history.encode_frames(rgb)  # eval mode: the centre crop
        if self.window is None:
            if executed is not None and self.history.config.use_actions:
                _, self._state = self.history.step(self.history.action_token(executed),
                                                   self._state)
            vector, self._state = self.history.step(self.history.vision_token(features),
                                                    self._state)
        else:
            if executed is not None:
                self._steps[-1]["action"] = executed[0]
            self._steps.append({"features": features[0], "action": None})
            vector = self._window_history()
        return {**observation, HISTORY_KEY: vector[0].numpy().astype(np.float32)}

    def _window_history(self) -> torch.Tensor:
        """As ``VisuomotorPolicy`` reads a windowed history: steps before the episode began are
        flagged invalid (their tokens are zeroed), with zero actions."""
        steps, pad = list(self._steps), self.window - len(self._steps)
        no_action = torch.zeros(self.history.config.action_dim)
        features = torch.stack([steps[-1]["features"]] * pad + [s["features"] for s in steps])
        actions = torch.stack([no_action] * pad + [
            s["action"] if s["action"] is not None else no_action for s in steps])
        valid = torch.tensor([False] * pad + [True] * len(steps))
        return self.history.window_history(features[None], actions[None], valid[None])
