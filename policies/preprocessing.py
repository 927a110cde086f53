"""What the policies do to their inputs before a network sees them: crop camera frames, scale
joints and actions to [-1, 1].

Shared by the visuomotor policy, the AEM pretrainer, the feature cache and the stable-baselines3
wrapper, so it imports only NumPy and torch: a module every model can build on without importing
another model.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def crop_images(
    images: torch.Tensor, size: int, random: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Crop (B, H, W, C) images to (B, size, size, C): a random window per image, or the centre."""
    _, height, width, _ = images.shape
    if random:
        top = torch.randint(0, height - size + 1, (len(images),), generator=generator).tolist()
        left = torch.randint(0, width - size + 1, (len(images),), generator=generator).tolist()
        return torch.stack(
            [img[t : t + size, l : l + size] for img, t, l in zip(images, top, left)]
        )
    top, left = (height - size) // 2, (width - size) // 2
    return images[:, top : top + size, left : left + size]


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
                "(fit_normalization) or load a trained checkpoint"
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
