"""DINOv2 (Oquab et al., 2023) through timm: the class token of a ViT, frozen by default.

Weights: ``weights=PATH`` (timm's ``model.safetensors`` or Meta's original ``.pth``; timm's
checkpoint filter converts the latter and resamples the position embedding to ``input_size``), or
the Hugging Face cache that ``timm.create_model(..., pretrained=True)`` fills when it can download.
"""

from __future__ import annotations

import torch
from huggingface_hub import try_to_load_from_cache

from aem_bench.policies.encoders.base import Encoder, preprocess, register_encoder
from aem_bench.policies.encoders.weights import load_exactly, read_state_dict, resolve


@register_encoder("dinov2")
class DINOv2Encoder(Encoder):
    pretrained = True

    def __init__(self, model_name: str = "vit_small_patch14_dinov2.lvd142m",
                 weights: str | None = None, input_size: int = 224,
                 model_kwargs: dict | None = None, load_weights: bool = True):
        super().__init__(model_name=model_name, weights=weights, input_size=input_size,
                         model_kwargs=model_kwargs or {})
        # Imported here, not at the top: timm takes seconds to import, and every process that
        # registers the zoo's encoders would pay for it, DINOv2 used or not.
        import timm
        from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
        from timm.models.vision_transformer import checkpoint_filter_fn

        self.input_size = input_size
        self.mean, self.std = IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
        self.model = timm.create_model(model_name, pretrained=False, num_classes=0,
                                       img_size=input_size, **(model_kwargs or {}))
        self.feature_dim = self.model.num_features
        if load_weights:
            hub_id = self.model.pretrained_cfg.get("hf_hub_id")
            cached = try_to_load_from_cache(hub_id, "model.safetensors") if hub_id else None
            path = resolve(weights, cached if isinstance(cached, str) else None, "dinov2",
                           f"the Hugging Face cache for {hub_id}",
                           f"On a machine with internet, run `timm.create_model('{model_name}', "
                           f"pretrained=True)` and copy ~/.cache/huggingface here.")
            if path is not None:
                state = checkpoint_filter_fn(read_state_dict(path), self.model)
                load_exactly(self.model, state, str(path))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = preprocess(images, self.input_size, self.mean, self.std)
        return self.model(x)
