"""Flow matching head: a velocity field from noise to actions, integrated with a few Euler steps.

Training (rectified flow / conditional flow matching): for noise x0, actions x1 and t ~ U(0, 1),
the point x_t = (1 - t) x0 + t x1 moves with velocity x1 - x0; the UNet regresses it. Sampling
integrates dx/dt = v(x, t) from t = 0 to 1 in ``num_inference_steps`` Euler steps.

Consistency (``consistency_weight > 0``, in the spirit of ManiFlow): the endpoint the model
extrapolates from x_t, f(x_t, t) = x_t + (1 - t) v(x_t, t), should not depend on t along one path.
The loss ties f at t to f at t + ``consistency_delta`` (a stop-gradient target), which straightens
the flow so that one or two Euler steps suffice.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from aem_bench.policies.unet1d import unet_for

TIME_SCALE = 1000.0  # t in [0, 1] is embedded as t * 1000, the range the sinusoidal embedding suits


class FlowHead(nn.Module):
    def __init__(self, config, cond_dim: int):
        super().__init__()
        self.config = config
        self.unet = unet_for(config, cond_dim)

    def velocity(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t * TIME_SCALE, cond)

    def loss(self, actions: torch.Tensor, cond: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(actions.shape, generator=generator, device=actions.device)
        t = torch.rand(len(actions), generator=generator, device=actions.device)

        def along_path(time: torch.Tensor) -> torch.Tensor:
            return (1 - time[:, None, None]) * noise + time[:, None, None] * actions

        x_t = along_path(t)
        v = self.velocity(x_t, t, cond)
        loss = F.mse_loss(v, actions - noise)
        if self.config.consistency_weight > 0:
            later = torch.clamp(t + self.config.consistency_delta, max=1.0)
            x_later = along_path(later)
            with torch.no_grad():
                target = x_later + (1 - later)[:, None, None] * self.velocity(x_later, later, cond)
            endpoint = x_t + (1 - t)[:, None, None] * v
            loss = loss + self.config.consistency_weight * F.mse_loss(endpoint, target)
        return loss

    def sample(self, cond: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        shape = (len(cond), self.config.pred_horizon, self.config.action_dim)
        x = torch.randn(shape, generator=generator, device=cond.device)
        steps = self.config.num_inference_steps
        for i in range(steps):
            t = torch.full((len(cond),), i / steps, device=cond.device)
            x = x + self.velocity(x, t, cond) / steps
        return x.clamp(-1.0, 1.0) if self.config.clip_sample else x
