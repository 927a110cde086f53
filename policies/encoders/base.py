"""The base of every image encoder: the :class:`Encoder` class, the registry of built-in
encoders and :func:`preprocess`.

Apart from the package's ``__init__`` so that the built-in encoders (``resnet.py``, ``dinov2.py``,
...) can subclass and register without importing the package that imports them; the interface
they implement is described in the package's docstring. Imports only torch.
"""

from __future__ import annotations

import hashlib
import json

import torch
from torch import nn

ENCODERS: dict[str, type[Encoder]] = {}


class Encoder(nn.Module):
    """Base class: per-frame features of uint8 RGB frames."""

    feature_dim: int
    pretrained: bool = False  # True: weights come from elsewhere, frozen unless told otherwise

    def __init__(self, **options):
        super().__init__()
        self.options = options  # what rebuilds this encoder; part of its fingerprint

    def fingerprint(self) -> str:
        """A digest of the options and every weight: equal fingerprints give equal features."""
        digest = hashlib.sha256(type(self).__name__.encode())
        digest.update(json.dumps(self.options, sort_keys=True, default=str).encode())
        for name, tensor in sorted(self.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()


def register_encoder(name: str):
    def decorate(cls: type[Encoder]) -> type[Encoder]:
        if name in ENCODERS:
            raise ValueError(f"encoder '{name}' is registered twice")
        ENCODERS[name] = cls
        return cls

    return decorate


def preprocess(images: torch.Tensor, size: int, mean: tuple, std: tuple) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> normalised float (N, 3, size, size), the input of pretrained nets."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise TypeError(f"expected uint8 images (N, H, W, 3), got {images.dtype} "
                        f"{tuple(images.shape)}")
    x = images.permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-2:] != (size, size):
        x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                                      align_corners=False)
    mean = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std
