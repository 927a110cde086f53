"""Diffusion Policy's head: DDPM noise at training, a few deterministic DDIM steps at run time."""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn
from torch.nn import functional as F

from aem_bench.policies.unet1d import unet_for


class DiffusionHead(nn.Module):
    def __init__(self, config, cond_dim: int):
        super().__init__()
        self.config = config
        self.unet = unet_for(config, cond_dim)
        schedule = {
            "num_train_timesteps": config.num_train_timesteps,
            "beta_schedule": config.beta_schedule,
            "prediction_type": config.prediction_type,
            "clip_sample": config.clip_sample,
        }
        self.noise_scheduler = DDPMScheduler(**schedule)
        self.sampler = DDIMScheduler(**schedule)
        self.sampler.set_timesteps(config.num_inference_steps)

    def loss(self, actions: torch.Tensor, cond: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(actions.shape, generator=generator, device=actions.device)
        steps = torch.randint(0, self.config.num_train_timesteps, (len(actions),),
                              generator=generator, device=actions.device)
        prediction = self.unet(self.noise_scheduler.add_noise(actions, noise, steps), steps, cond)
        target = noise if self.config.prediction_type == "epsilon" else actions
        return F.mse_loss(prediction, target)

    def sample(self, cond: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        shape = (len(cond), self.config.pred_horizon, self.config.action_dim)
        chunk = torch.randn(shape, generator=generator, device=cond.device)
        for step in self.sampler.timesteps:
            # eta = 0: deterministic DDIM, so the generator only decides the starting noise.
            chunk = self.sampler.step(self.unet(chunk, step, cond), step, chunk).prev_sample
        return chunk
