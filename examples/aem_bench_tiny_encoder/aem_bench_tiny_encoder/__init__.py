"""TinyEncoder: the smallest useful aem-bench image encoder, and the template to copy.

Three strided convolutions and a linear layer, trained from scratch together with the benchmark's
fixed action head. It is here to show the contract (see ``aem_bench.policies.encoders``), not to
win: uint8 frames (N, H, W, 3) in, float features (N, feature_dim) out, options as keyword
arguments passed on to ``Encoder.__init__``, no state between calls.

It is registered by the entry point in ``pyproject.toml``, not by ``register_encoder``: aem-bench
imports this module only when a run asks for ``tiny``.
"""

from __future__ import annotations

import torch
from torch import nn

from aem_bench.policies.encoders import Encoder

__all__ = ["TinyEncoder"]


class TinyEncoder(Encoder):
    """uint8 (N, H, W, 3) frames -> (N, feature_dim) features, any frame size.

    ``pretrained = False`` (inherited): the weights start random and are trained with the head;
    they are saved in the policy's checkpoint. A pretrained encoder would set
    ``pretrained = True`` and take ``load_weights`` in ``__init__``.
    """

    def __init__(self, channels: int = 16, feature_dim: int = 64):
        # Every option goes to the base class: it is saved in the policy's config.json, rebuilds
        # this encoder when the checkpoint is loaded, and enters its fingerprint.
        super().__init__(channels=channels, feature_dim=feature_dim)
        self.feature_dim = feature_dim  # the head is sized from it before any frame is seen
        self.net = nn.Sequential(
            nn.Conv2d(3, channels, kernel_size=5, stride=2, padding=2),
            nn.GroupNorm(4, channels),  # not BatchNorm: the policy acts on one frame at a time
            nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, kernel_size=3, stride=2, padding=1),
            nn.GroupNorm(4, 2 * channels),
            nn.ReLU(),
            nn.Conv2d(2 * channels, 2 * channels, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),  # any crop size ends as a 4x4 map: the layout is kept
            nn.Flatten(),
            nn.Linear(2 * channels * 16, feature_dim),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise TypeError(f"expected uint8 images (N, H, W, 3), got {images.dtype} "
                            f"{tuple(images.shape)}")
        x = images.permute(0, 3, 1, 2).float() / 255.0  # the encoder does its own scaling
        return self.net(x)
