"""R3M (Nair et al., 2022): a torchvision ResNet pretrained on Ego4D video, frozen by default.

Reads R3M's own checkpoint format: ``model.pt`` holding ``{"r3m": state_dict}`` whose ResNet
weights are named ``module.convnet.*`` (the language parts are dropped). The cache is R3M's,
``~/.r3m/r3m_{18,34,50}/model.pt``, where ``r3m.load_r3m`` puts its downloads.
"""

from __future__ import annotations

from pathlib import Path

import torch

from aem_bench.errors import UsageError
from aem_bench.policies.encoders.base import Encoder, preprocess, register_encoder
from aem_bench.policies.encoders.weights import load_exactly, read_state_dict, resolve

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
PREFIX = "module.convnet."


def convnet_weights(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The ResNet's tensors out of an R3M checkpoint (or a plain ResNet state dict)."""
    state = checkpoint.get("r3m", checkpoint)
    if any(key.startswith(PREFIX) for key in state):
        state = {key[len(PREFIX):]: value for key, value in state.items() if key.startswith(PREFIX)}
    return {key: value for key, value in state.items() if not key.startswith("fc.")}


@register_encoder("r3m")
class R3MEncoder(Encoder):
    pretrained = True

    def __init__(self, depth: int = 50, weights: str | None = None, input_size: int = 224,
                 load_weights: bool = True):
        if depth not in (18, 34, 50):
            raise UsageError("encoder_options", f"r3m: depth must be 18, 34 or 50 (R3M's "
                             f"releases), got {depth}")
        super().__init__(depth=depth, weights=weights, input_size=input_size)
        self.input_size = input_size
        import torchvision  # here, not at the top: seconds to import, R3M used or not

        self.model = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        self.feature_dim = self.model.fc.in_features
        self.model.fc = torch.nn.Identity()
        if load_weights:
            cached = Path.home() / ".r3m" / f"r3m_{depth}" / "model.pt"
            path = resolve(weights, cached, "r3m", str(cached),
                           f"On a machine with internet, run `r3m.load_r3m('resnet{depth}')` "
                           f"and copy ~/.r3m here.")
            if path is not None:
                load_exactly(self.model, convnet_weights(read_state_dict(path)), str(path))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(preprocess(images, self.input_size, IMAGENET_MEAN, IMAGENET_STD))
