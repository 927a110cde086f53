"""Diffusion Policy: an image + joint-state conditioned denoiser of action chunks.

Training (``compute_loss``): normalise the expert's action chunk to [-1, 1], add DDPM noise at a
random step k and regress the noise (or the clean chunk) from the noisy chunk, k and the
observation features.

Run time (``reset`` / ``act``): keep the last ``obs_horizon`` observations; when the queue of
planned actions is empty, sample a chunk with a few DDIM steps and queue its first ``action_steps``
actions. Observation t predicts actions t .. t + pred_horizon - 1, as in the training windows.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn
from torch.nn import functional as F

from aem_bench.policies.configuration_diffusion import DiffusionConfig
from aem_bench.policies.unet1d import ConditionalUnet1D
from aem_bench.policies.vision import ImageEncoder


class MinMaxNormalizer(nn.Module):
    """Maps each dimension from its dataset [min, max] to [-1, 1]; stats are saved with the model.

    The stats start as NaN so that a policy that was never fitted fails loudly instead of acting
    on garbage. A dimension that never moves in the data (a gripper that stays open) would divide by
    zero; it gets a half-range of 1, so it maps to 0 in training and back to its constant value.
    """

    def __init__(self, dim: int, name: str):
        super().__init__()
        self.name = name
        self.register_buffer("min", torch.full((dim,), float("nan")))
        self.register_buffer("max", torch.full((dim,), float("nan")))

    @torch.no_grad()
    def fit(self, data: np.ndarray | torch.Tensor) -> None:
        data = torch.as_tensor(data, dtype=torch.float32).reshape(-1, len(self.min))
        self.min.copy_(data.min(0).values)
        self.max.copy_(data.max(0).values)

    def _center_and_half_range(self) -> tuple[torch.Tensor, torch.Tensor]:
        if torch.isnan(self.min).any():
            raise RuntimeError(
                f"normalisation stats for '{self.name}' are not set: fit the policy on a dataset "
                "(DiffusionPolicy.fit_normalization) or load a trained checkpoint"
            )
        half = (self.max - self.min) / 2
        half = torch.where(half < 1e-4, torch.ones_like(half), half)
        return (self.max + self.min) / 2, half

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        center, half = self._center_and_half_range()
        return (x - center) / half

    def unnormalize(self, x: torch.Tensor) -> torch.Tensor:
        center, half = self._center_and_half_range()
        return x * half + center


class DiffusionPolicy(nn.Module):
    def __init__(self, config: DiffusionConfig):
        super().__init__()
        self.config = config
        self.image_encoder = ImageEncoder(
            config.crop_size,
            config.vision_channels,
            config.num_keypoints,
            config.feature_dim,
            config.n_groups,
        )
        self.unet = ConditionalUnet1D(
            action_dim=config.action_dim,
            global_cond_dim=config.obs_horizon * (config.feature_dim + config.state_dim),
            down_dims=config.down_dims,
            kernel_size=config.kernel_size,
            n_groups=config.n_groups,
            timestep_embed_dim=config.timestep_embed_dim,
        )
        self.state_normalizer = MinMaxNormalizer(config.state_dim, "state")
        self.action_normalizer = MinMaxNormalizer(config.action_dim, "actions")

        schedule = {
            "num_train_timesteps": config.num_train_timesteps,
            "beta_schedule": config.beta_schedule,
            "prediction_type": config.prediction_type,
            "clip_sample": config.clip_sample,
        }
        self.noise_scheduler = DDPMScheduler(**schedule)
        self.sampler = DDIMScheduler(**schedule)
        self.sampler.set_timesteps(config.num_inference_steps)
        self.reset()

    # ----------------------------------------------------------------------------- statistics

    def fit_normalization(self, state: np.ndarray, actions: np.ndarray) -> None:
        """Set the min/max stats from all state (N, state_dim) and action (N, action_dim) rows."""
        self.state_normalizer.fit(state)
        self.action_normalizer.fit(actions)

    # ----------------------------------------------------------------------------- training

    def _global_cond(
        self, rgb: torch.Tensor, state: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """rgb (B, To, H, W, 3) uint8 and state (B, To, state_dim) -> (B, To * (feature + state))."""
        batch, horizon = state.shape[:2]
        if tuple(rgb.shape[2:4]) != tuple(self.config.image_size):
            raise ValueError(
                f"images are {tuple(rgb.shape[2:4])} but the policy was built for "
                f"{tuple(self.config.image_size)}"
            )
        features = self.image_encoder(rgb.flatten(0, 1), generator).reshape(batch, horizon, -1)
        return torch.cat([features, self.state_normalizer.normalize(state)], dim=-1).flatten(1)

    def compute_loss(
        self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Denoising loss of a batch {"rgb": (B, To, H, W, 3) uint8, "state": (B, To, D),
        "actions": (B, Tp, A)}. ``generator`` drives the crops, noise and diffusion steps."""
        cond = self._global_cond(batch["rgb"], batch["state"], generator)
        actions = self.action_normalizer.normalize(batch["actions"])
        noise = torch.randn(actions.shape, generator=generator, device=actions.device)
        steps = torch.randint(
            0,
            self.config.num_train_timesteps,
            (len(actions),),
            generator=generator,
            device=actions.device,
        )
        noisy = self.noise_scheduler.add_noise(actions, noise, steps)
        prediction = self.unet(noisy, steps, cond)
        target = noise if self.config.prediction_type == "epsilon" else actions
        return F.mse_loss(prediction, target)

    # ----------------------------------------------------------------------------- sampling

    @torch.inference_mode()
    def predict_action_chunk(
        self, obs_batch: dict[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """{"rgb": (B, To, H, W, 3) uint8, "state": (B, To, D)} -> actions (B, Tp, A), unnormalised."""
        cond = self._global_cond(obs_batch["rgb"], obs_batch["state"])
        shape = (len(cond), self.config.pred_horizon, self.config.action_dim)
        chunk = torch.randn(shape, generator=generator, device=cond.device)
        for step in self.sampler.timesteps:
            prediction = self.unet(chunk, step, cond)
            # eta = 0: deterministic DDIM, so the generator only decides the starting noise.
            chunk = self.sampler.step(prediction, step, chunk).prev_sample
        return self.action_normalizer.unnormalize(chunk)

    # ----------------------------------------------------------------------------- run time

    def reset(self, seed: int | None = None) -> None:
        """Start an episode: forget past observations and planned actions, reseed the sampler."""
        self._observations: deque[dict[str, torch.Tensor]] = deque(maxlen=self.config.obs_horizon)
        self._actions: deque[np.ndarray] = deque()
        device = self.state_normalizer.min.device
        self._generator = torch.Generator(device=device)
        if seed is None:
            self._generator.seed()  # fresh entropy; a new Generator alone has a fixed seed
        else:
            self._generator.manual_seed(int(seed))

    @torch.inference_mode()
    def act(self, observation: dict) -> np.ndarray:
        """{"rgb": (H, W, 3) uint8, "qpos": (16,)[, "oracle": (K,)]} -> the next action,
        (action_dim,) float32."""
        device = self.state_normalizer.min.device
        missing = [key for key in self.config.state_keys if key not in observation]
        if missing:
            raise ValueError(f"the policy needs observation keys {missing}; an oracle policy "
                             f"needs the task made with obs_mode='rgb+oracle'")
        state = np.concatenate([np.asarray(observation[key], dtype=np.float32)
                                for key in self.config.state_keys])
        self._observations.append(
            {
                "rgb": torch.as_tensor(np.ascontiguousarray(observation["rgb"]), device=device),
                "state": torch.as_tensor(state, device=device),
            }
        )
        if not self._actions:
            # Before obs_horizon steps have passed, repeat the first frame, as the training
            # windows do at the start of an episode.
            history = list(self._observations)
            history = [history[0]] * (self.config.obs_horizon - len(history)) + history
            obs_batch = {key: torch.stack([o[key] for o in history])[None] for key in history[0]}
            chunk = self.predict_action_chunk(obs_batch, self._generator)[0]
            self._actions.extend(chunk[: self.config.action_steps].cpu().numpy())
        return self._actions.popleft().astype(np.float32)
