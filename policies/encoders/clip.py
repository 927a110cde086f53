"""CLIP's image tower (Radford et al., 2021) through open_clip, frozen by default.

Weights: ``weights=PATH`` (an open_clip state dict, ``.safetensors`` or ``.bin``: the whole model,
whose ``visual.*`` tensors are taken, or the image tower alone), or the Hugging Face cache that
``open_clip.create_model(model_name, pretrained=tag)`` fills when it can download. OpenAI's
original TorchScript ``.pt`` files are refused (loading them would run code).
"""

from __future__ import annotations

from pathlib import Path

import torch
from huggingface_hub import try_to_load_from_cache

from aem_bench.policies.encoders.base import Encoder, preprocess, register_encoder
from aem_bench.policies.encoders.weights import load_exactly, read_state_dict, resolve


def _cached_file(model_name: str, tag: str | None):
    import open_clip
    from open_clip.pretrained import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    cfg = open_clip.get_pretrained_cfg(model_name, tag) if tag else {}
    repo = (cfg.get("hf_hub") or "").strip("/")
    for filename in (HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME):
        found = try_to_load_from_cache(repo, filename) if repo else None
        if isinstance(found, str):
            return found, repo
    return None, repo


@register_encoder("clip")
class CLIPEncoder(Encoder):
    pretrained = True

    def __init__(self, model_name: str = "ViT-B-32", pretrained_tag: str | None = "openai",
                 weights: str | None = None, model_kwargs: dict | None = None,
                 load_weights: bool = True):
        super().__init__(model_name=model_name, pretrained_tag=pretrained_tag, weights=weights,
                         model_kwargs=model_kwargs or {})
        # Imported here, not at the top: open_clip takes seconds to import, and every process
        # that registers the zoo's encoders would pay for it, CLIP used or not.
        import open_clip

        cfg = open_clip.get_pretrained_cfg(model_name, pretrained_tag) if pretrained_tag else {}
        clip = open_clip.create_model(model_name, pretrained=None, load_weights=False,
                                      force_quick_gelu=bool(cfg.get("quick_gelu", False)),
                                      **(model_kwargs or {}))
        self.model = clip.visual  # the text tower is dropped
        self.feature_dim = self.model.output_dim
        self.input_size = int(self.model.image_size[0])
        self.mean = cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)
        self.std = cfg.get("std", open_clip.OPENAI_DATASET_STD)
        if load_weights:
            cached, repo = _cached_file(model_name, pretrained_tag)
            path = resolve(weights, None if cached is None else Path(cached),
                           "clip", f"the Hugging Face cache for {repo or model_name}",
                           f"On a machine with internet, run `open_clip.create_model("
                           f"'{model_name}', pretrained='{pretrained_tag}')` and copy "
                           f"~/.cache/huggingface here.")
            if path is not None:
                state = read_state_dict(path)
                if any(key.startswith("visual.") for key in state):
                    state = {k[len("visual."):]: v for k, v in state.items()
                             if k.startswith("visual.")}
                load_exactly(self.model, state, str(path))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(preprocess(images, self.input_size, self.mean, self.std))
