"""Configuration of AEM, Action-Effect Memory pretraining (Cai et al., arXiv 2606.12499).

Per step t a visual feature v_t and the action a_t become one token each, interleaved
(v_1, a_1, v_2, a_2, ...). Whole steps are masked (both tokens together); a Mamba encoder reads the
visible tokens in order; a small Transformer decoder reconstructs the masked steps' visual content
and actions. The encoder's output at the last vision token is the history vector.

Everything needed to rebuild the model lives here, so ``config.json`` next to ``model.safetensors``
is a checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from aem_bench.errors import UsageError
from aem_bench.policies.config_base import JsonConfig


@dataclass
class AEMConfig(JsonConfig):
    # The per-step visual feature: a zoo encoder (``policies/encoders``). The paper uses frozen
    # DINOv2; with no pretrained weights on a machine, the ResNet is trained here, against pixel
    # targets, which cannot collapse the way a learned target can.
    encoder: str = "resnet"
    encoder_options: dict = field(default_factory=dict)
    freeze_encoder: bool | None = None  # None: frozen iff the encoder is pretrained
    # What a masked vision token must reconstruct: "pixels" (the crop at target_pixels^2, RGB) or
    # "features" (the frozen encoder's feature). None: features iff the encoder is frozen.
    vision_target: str | None = None
    target_pixels: int = 16

    # Shapes of the data, filled from the demonstrations.
    image_size: tuple[int, int] = (128, 128)
    crop_size: int | None = None  # None: 90% of the side, as the policies
    action_dim: int = 16

    # Tokens and the Mamba encoder.
    d_model: int = 64
    n_layers: int = 2
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    use_actions: bool = True  # False: the "no actions in pretraining" ablation

    # The decoder (a Transformer, as in the paper) over the whole window.
    decoder_layers: int = 2
    decoder_heads: int = 4

    # Windows (steps) and masking.
    window: int = 32  # pretraining window
    mask_ratio: float = 0.7  # fraction of the window's steps masked, vision and action together
    # Where windows start: "random" (the paper's: ``window`` consecutive steps anywhere in an
    # episode) or "episode" (at step 0, as the recurrent history reads an episode at run time, over
    # the first ``window`` steps or the whole shortest episode, whichever is shorter). A memory
    # task's cue and decision can be a hundred steps apart: only "episode" windows hold both.
    window_start: str = "random"
    # What the decoder reads: "tokens" (every visible step's encoder output and the history
    # vector) or "history" (the history vector alone, with positions and mask tokens: the paper's
    # one-vector bottleneck, so that only what the history holds can be reconstructed).
    decoder_reads: str = "tokens"
    # A causal term: the encoder's output at each visible frame predicts the next
    # ``future_actions`` actions from the past alone (0: off), with weight ``future_weight``.
    # Reconstruction can use the steps after a masked one; acting on the past cannot.
    future_actions: int = 0
    future_weight: float = 1.0
    # A trained policy checkpoint (e.g. the single-frame DP of the same demonstrations) whose
    # frame encoder AEM takes, frozen; the masked frames' targets are then its features.
    encoder_checkpoint: str | None = None
    # History at run time: None feeds the episode one step at a time through the recurrent state
    # (constant cost per step, memory back to the episode's start); an int recomputes the history
    # over the last that many steps (the paper's 16) at each prediction.
    inference_window: int | None = None

    # Optimisation.
    lr: float = 1e-3
    weight_decay: float = 1e-4
    lr_warmup_steps: int = 200
    # 8 windows of 32 steps: ~80 visible frames through the CNN per step, so that the default
    # 2,000 steps fit in 20 minutes on a 2-core CPU (16 windows took 1.2 s a step on one core).
    batch_size: int = 8
    grad_clip_norm: float | None = 1.0

    def validate(self) -> None:
        require = self.require
        require(0.0 <= self.mask_ratio < 1.0, f"mask_ratio must be in [0, 1), got {self.mask_ratio}")
        require(self.window >= 2, f"window must be >= 2, got {self.window}")
        require(self.inference_window is None or self.inference_window >= 1,
                "inference_window must be None or >= 1")
        require(self.vision_target in (None, "pixels", "features"),
                f"vision_target must be 'pixels' or 'features', got {self.vision_target!r}")
        require(self.d_model % self.decoder_heads == 0, "d_model must divide by decoder_heads")
        require(self.window_start in ("random", "episode"),
                f"window_start must be 'random' or 'episode', got {self.window_start!r}")
        require(self.decoder_reads in ("tokens", "history"),
                f"decoder_reads must be 'tokens' or 'history', got {self.decoder_reads!r}")
        require(self.future_actions >= 0 and self.future_weight >= 0,
                "future_actions and future_weight must be >= 0")
        require(self.crop_size <= min(self.image_size), "crop_size is larger than the images")


# The paper's ablations as named settings: overrides of the pretraining (`aem-bench pretrain
# --ablation NAME`) and of the downstream aem-dp / aem-flow (`aem-bench train --ablation NAME`).
# "no-pretraining" keeps the pretraining run's (frozen) vision encoder, as the paper keeps its
# frozen DINOv2, and trains a fresh Mamba with the head over a 16-step window.
ABLATIONS: dict[str, dict[str, dict]] = {
    "full": {"pretrain": {}, "policy": {}},
    "no-actions": {"pretrain": {"use_actions": False}, "policy": {}},
    "no-pretraining": {"pretrain": {},
                       "policy": {"pretrained_history": False,
                                  "history": {"inference_window": 16}}},
    "memory-only": {"pretrain": {}, "policy": {"history_fusion": "memory_only"}},
    "feature-add": {"pretrain": {}, "policy": {"history_fusion": "add"}},
    "mask-0.5": {"pretrain": {"mask_ratio": 0.5}, "policy": {}},
    "mask-0.9": {"pretrain": {"mask_ratio": 0.9}, "policy": {}},
    # For this suite's memory tasks, whose cue and decision lie far apart: windows from step 0
    # over (most of) the episode, alone, with the one-vector bottleneck, and with the causal term.
    "episode": {"pretrain": {"window_start": "episode", "window": 400}, "policy": {}},
    "episode-bottleneck": {"pretrain": {"window_start": "episode", "window": 400,
                                        "decoder_reads": "history"}, "policy": {}},
    "episode-causal": {"pretrain": {"window_start": "episode", "window": 400,
                                    "future_actions": 8}, "policy": {}},
    "bottleneck": {"pretrain": {"decoder_reads": "history"}, "policy": {}},
    # The episode-causal history fine-tuned with the head through whole episodes, and the same
    # Mamba from random weights trained that way (the paper's "without pretraining" at the
    # horizons of this suite, where a 16-step window cannot reach back to the cue).
    "episode-causal-finetune": {"pretrain": {"window_start": "episode", "window": 400,
                                             "future_actions": 8},
                                "policy": {"freeze_history": False}},
    "episode-no-pretraining": {"pretrain": {"window_start": "episode", "window": 400,
                                            "future_actions": 8},
                               "policy": {"pretrained_history": False}},
}


def ablation(name: str, part: str) -> dict:
    """The overrides of ablation ``name`` for ``part`` ("pretrain" or "policy")."""
    if name not in ABLATIONS:
        raise UsageError("ablation", f"unknown AEM ablation '{name}'; known: {sorted(ABLATIONS)}")
    return json.loads(json.dumps(ABLATIONS[name][part]))
