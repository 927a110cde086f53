"""Image encoders of the policy zoo, one interface.

An encoder turns camera frames into one feature vector per frame::

    encoder(images)  # uint8 (N, H, W, 3), already cropped -> float (N, encoder.feature_dim)

It gets the frames as the camera gives them (RGB, uint8) and does its own preprocessing (scaling,
resizing, normalisation), so that any encoder fits any head and any task. Policies that need a
history (frame stacking, AEM) apply the encoder to each frame and combine the features themselves.

``pretrained`` encoders (DINOv2, CLIP, R3M) come with weights of their own and are frozen by
default: their features are computed once per dataset and cached (``feature_cache.py``). The
ResNet is trained from scratch with the head.

Encoders are registered by name with :func:`register_encoder` and built with
:func:`make_encoder`; a policy config names its encoder and passes ``encoder_options`` through.
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


def make_encoder(name: str, load_weights: bool = True, **options) -> Encoder:
    """Build encoder ``name`` with ``options``. ``load_weights=False`` skips reading a pretrained
    encoder's weights, for when a checkpoint is about to overwrite them anyway."""
    if name not in ENCODERS:
        raise KeyError(f"unknown encoder '{name}'; registered: {sorted(ENCODERS)}")
    cls = ENCODERS[name]
    try:
        return cls(load_weights=load_weights, **options) if cls.pretrained else cls(**options)
    except TypeError as err:
        raise ValueError(f"encoder '{name}': bad encoder_options {options}: {err}") from None


def build_encoder(config, load_weights: bool = True) -> tuple[Encoder, bool]:
    """The encoder a config names (``encoder``, ``encoder_options``, ``freeze_encoder``) and
    whether it is frozen: pretrained encoders are unless ``freeze_encoder`` says otherwise."""
    encoder = make_encoder(config.encoder, load_weights=load_weights, **config.encoder_options)
    frozen = encoder.pretrained if config.freeze_encoder is None else config.freeze_encoder
    encoder.requires_grad_(not frozen)
    return encoder, frozen


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


# Register the built-in encoders (imported for their decorators).
from aem_bench.policies.encoders import clip, dinov2, r3m, resnet  # noqa: F401
