"""The single-frame encoder: a ResNet with GroupNorm and a spatial-softmax head, trained from scratch.

The default is ResNet18's layout slimmed for a 2-core CPU (three stages of one block, 16-64
channels); ``channels=(64, 128, 256, 512), blocks_per_stage=2`` gives ResNet18's widths and depth.

GroupNorm instead of BatchNorm because the policy is trained with EMA weights and evaluated one
image at a time; BatchNorm's running statistics interact badly with both (Diffusion Policy, §IV-A).

Spatial softmax instead of average pooling because the action targets are absolute joint positions:
the policy needs to know *where* the block and the grippers are, and average pooling throws the
position away. Each keypoint channel becomes a softmax over the feature map, and its expected (x, y)
is the feature (robomimic / Levine et al. 2016).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from aem_bench.errors import UsageError
from aem_bench.policies.encoders.base import Encoder, register_encoder


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, n_groups: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.norm1 = nn.GroupNorm(n_groups, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.norm2 = nn.GroupNorm(n_groups, out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.GroupNorm(n_groups, out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return F.relu(h + self.shortcut(x))


class SpatialSoftmax(nn.Module):
    """(B, C, H, W) -> (B, 2K): the expected image coordinates of K learned keypoints."""

    def __init__(self, in_channels: int, num_keypoints: int):
        super().__init__()
        self.keypoints = nn.Conv2d(in_channels, num_keypoints, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.keypoints(x).flatten(2)  # (B, K, H*W)
        height, width = x.shape[-2:]
        ys = torch.linspace(-1.0, 1.0, height, device=x.device, dtype=x.dtype)
        xs = torch.linspace(-1.0, 1.0, width, device=x.device, dtype=x.dtype)
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(-1, 2)  # (H*W, 2)
        return (logits.softmax(-1) @ grid).flatten(1)  # (B, K, 2) -> (B, 2K)


@register_encoder("resnet")
class ResNetEncoder(Encoder):
    """uint8 (N, H, W, 3) camera images -> (N, feature_dim) features.

    The stem embeds non-overlapping 4x4 patches (a stride-4 conv, as in ConvNeXt), taking the image
    to a quarter of its side before the first residual stage: on a CPU, layers at full resolution
    would cost more than the rest of the policy together (a stride-2 conv + max-pool stem made the
    encoder ~35% slower). Each further stage halves the side again, so a 116-pixel crop ends as an
    8x8 map for the keypoints.
    """

    def __init__(
        self,
        channels: tuple[int, ...] = (16, 32, 64),
        blocks_per_stage: int = 1,
        num_keypoints: int = 32,
        feature_dim: int = 64,
        n_groups: int = 8,
    ):
        channels = tuple(channels)
        super().__init__(channels=channels, blocks_per_stage=blocks_per_stage,
                         num_keypoints=num_keypoints, feature_dim=feature_dim, n_groups=n_groups)
        bad = [c for c in channels if c % n_groups]
        if bad or blocks_per_stage < 1:
            raise UsageError("encoder_options", f"resnet: channels {channels} must be multiples "
                             f"of n_groups ({n_groups}) and blocks_per_stage >= 1")
        self.feature_dim = feature_dim
        self.stem = nn.Sequential(
            nn.Conv2d(3, channels[0], kernel_size=4, stride=4, bias=False),
            nn.GroupNorm(n_groups, channels[0]),
            nn.ReLU(),
        )
        stages, in_channels = [], channels[0]
        for i, out_channels in enumerate(channels):
            for block in range(blocks_per_stage):
                stride = 2 if i > 0 and block == 0 else 1
                stages.append(ResidualBlock(in_channels, out_channels, stride, n_groups))
                in_channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.pool = SpatialSoftmax(in_channels, num_keypoints)
        self.out = nn.Linear(2 * num_keypoints, feature_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            raise TypeError(f"expected uint8 images (N, H, W, 3), got {images.dtype}")
        x = images.permute(0, 3, 1, 2).float() / 255.0  # (N, 3, H, W) in [0, 1]
        return self.out(self.pool(self.stages(self.stem(x))))
