"""1-D temporal UNet that denoises an action chunk, conditioned through FiLM (Diffusion Policy, §III-B).

The chunk (B, T, action_dim) is treated as a sequence of length T with action_dim channels. Every
residual block receives one condition vector -- the diffusion-step embedding concatenated with the
observation features -- and turns it into a per-channel scale and bias (FiLM, Perez et al. 2018).
Conditioning every block, rather than feeding the observation once at the input, is what lets a
small network follow the observation closely.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class SinusoidalEmbedding(nn.Module):
    """Diffusion step k (B,) -> (B, dim), the Transformer position encoding applied to k."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, steps: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(
            -math.log(10000.0) * torch.arange(half, device=steps.device, dtype=torch.float32) / half
        )
        angles = steps.float()[:, None] * freqs[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class ConditionalResidualBlock1D(nn.Module):
    """(Conv1d -> GroupNorm -> Mish) twice, the condition scaling and shifting the features between.

    ``cond`` arrives already passed through Mish (done once in the UNet instead of in every block,
    as Diffusion Policy does: the same maths, fewer calls, which is what costs on a CPU at batch 1).
    """

    def __init__(
        self, in_channels: int, out_channels: int, cond_dim: int, kernel_size: int, n_groups: int
    ):
        super().__init__()
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.norm1 = nn.GroupNorm(n_groups, out_channels)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.norm2 = nn.GroupNorm(n_groups, out_channels)
        self.film = nn.Linear(cond_dim, 2 * out_channels)  # per-channel scale and bias
        self.residual = (
            nn.Conv1d(in_channels, out_channels, 1)
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, bias = self.film(cond).unsqueeze(-1).chunk(2, dim=1)  # (B, C, 1) each
        h = F.mish(self.norm1(self.conv1(x))) * scale + bias
        h = F.mish(self.norm2(self.conv2(h)))
        return h + self.residual(x)


class ConditionalUnet1D(nn.Module):
    """Noisy chunk (B, T, action_dim), step (B,) and condition (B, cond_dim) -> (B, T, action_dim).

    Levels follow ``down_dims``: two residual blocks each, then a stride-2 conv that halves T (not
    after the last level). The up path mirrors it, concatenating the skip of the same level, so T
    must be divisible by 2 ** (len(down_dims) - 1).
    """

    def __init__(
        self,
        action_dim: int,
        global_cond_dim: int,
        down_dims: tuple[int, ...] = (32, 64, 128),
        kernel_size: int = 3,
        n_groups: int = 8,
        timestep_embed_dim: int = 64,
    ):
        super().__init__()
        self.step_encoder = nn.Sequential(
            SinusoidalEmbedding(timestep_embed_dim),
            nn.Linear(timestep_embed_dim, 4 * timestep_embed_dim),
            nn.Mish(),
            nn.Linear(4 * timestep_embed_dim, timestep_embed_dim),
        )
        cond_dim = timestep_embed_dim + global_cond_dim

        def block(in_channels: int, out_channels: int) -> ConditionalResidualBlock1D:
            return ConditionalResidualBlock1D(
                in_channels, out_channels, cond_dim, kernel_size, n_groups
            )

        last = len(down_dims) - 1
        self.down = nn.ModuleList()
        in_channels = action_dim
        for level, channels in enumerate(down_dims):
            self.down.append(
                nn.ModuleList(
                    [
                        block(in_channels, channels),
                        block(channels, channels),
                        nn.Conv1d(channels, channels, 3, stride=2, padding=1)
                        if level < last
                        else nn.Identity(),
                    ]
                )
            )
            in_channels = channels

        self.mid = nn.ModuleList([block(in_channels, in_channels), block(in_channels, in_channels)])

        self.up = nn.ModuleList()
        for level in reversed(range(len(down_dims))):
            channels = down_dims[level]
            self.up.append(
                nn.ModuleList(
                    [
                        block(in_channels + channels, channels),  # + the skip of this level
                        block(channels, channels),
                        nn.ConvTranspose1d(channels, channels, 4, stride=2, padding=1)
                        if level > 0
                        else nn.Identity(),
                    ]
                )
            )
            in_channels = channels

        self.final_conv = nn.Conv1d(
            down_dims[0], down_dims[0], kernel_size, padding=kernel_size // 2
        )
        self.final_norm = nn.GroupNorm(n_groups, down_dims[0])
        self.head = nn.Conv1d(down_dims[0], action_dim, 1)

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor | int, global_cond: torch.Tensor
    ) -> torch.Tensor:
        x = sample.transpose(1, 2)  # (B, action_dim, T): channels first for Conv1d
        steps = torch.as_tensor(timestep, device=x.device).reshape(-1).expand(len(x))
        cond = F.mish(torch.cat([self.step_encoder(steps), global_cond], dim=-1))

        skips = []
        for block1, block2, downsample in self.down:
            x = block2(block1(x, cond), cond)
            skips.append(x)
            x = downsample(x)
        for block in self.mid:
            x = block(x, cond)
        for block1, block2, upsample in self.up:
            x = torch.cat([x, skips.pop()], dim=1)
            x = upsample(block2(block1(x, cond), cond))
        x = F.mish(self.final_norm(self.final_conv(x)))
        return self.head(x).transpose(1, 2)


def unet_for(config, cond_dim: int) -> ConditionalUnet1D:
    """The head network a policy config describes (``down_dims``, ``kernel_size``, ...)."""
    return ConditionalUnet1D(config.action_dim, cond_dim, config.down_dims, config.kernel_size,
                             config.n_groups, config.timestep_embed_dim)
