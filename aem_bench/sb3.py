"""Stable-Baselines3 feature extractors made of the policy zoo's image encoders, AEM's included.

Why: to train PPO / RecurrentPPO on the tasks' dense reward with the very encoders that behaviour
cloning uses (the ResNet trained from scratch, DINOv2, CLIP, R3M, or the vision encoder of an AEM
pretraining run), so that reinforcement learning and imitation can be compared encoder by encoder.

Usage::

    from sb3_contrib import RecurrentPPO
    model = RecurrentPPO("MultiInputLstmPolicy", env,
                         policy_kwargs=zoo_policy_kwargs("resnet", {"feature_dim": 64}))

What the extractor sees. The tasks' observation is ``{"rgb": Box uint8 (H, W, 3), "qpos": Box
(16,)}``. SB3 changes the image before a features extractor gets it: PPO wraps the environment in
``VecTransposeImage`` (the extractor's ``observation_space["rgb"]`` is then ``(3, H, W)``) and
``preprocess_obs`` casts it to float and, unless ``normalize_images=False``, divides by 255. The
extractor undoes both (``normalized_images`` must match the policy's ``normalize_images``, as
:func:`zoo_policy_kwargs` arranges), so the zoo encoder gets what it was written for: uint8
``(N, H, W, 3)`` frames, centre-cropped to ``crop_size`` like the policies' frames at run time.
The features are the encoder's ``(N, feature_dim)`` next to the flat entries of the observation
(``qpos``, and ``aem_history`` or ``oracle`` where the environment has them).

Memory. An image encoder is a function of one frame (see ``policies/encoders``); what the memory
tasks need to remember comes from one of two places:

- RecurrentPPO's LSTM (sb3-contrib ``MultiInputLstmPolicy``) over these per-step features: it
  carries its state through an episode, resets it at episode starts, and is trained by PPO.
- AEM's pretrained Mamba ``HistoryEncoder``, through the :class:`~aem_bench.aem_history.AEMHistory`
  environment wrapper: it reads the frames and the executed actions (which SB3 never hands to a
  features extractor) in the environment and adds the history vector to the observation, frozen,
  as the ``aem-*`` policies use it; the extractor concatenates it. This works with plain PPO too.

With ``aem_checkpoint`` the extractor encodes the current frame with the pretraining run's vision
encoder (frozen). Frame stacking (``VecFrameStack``) is not supported: it stacks images along the
channel axis, which a zoo encoder does not read.
"""

from __future__ import annotations

import os

import torch
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space_channels_first
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from aem_bench.policies.encoders import make_encoder
from aem_bench.policies.preprocessing import crop_images


class ZooFeaturesExtractor(BaseFeaturesExtractor):
    """Zoo encoder features of the camera frame, concatenated with the joint state.

    ``encoder``/``encoder_options``: a zoo encoder (``make_encoder``), or ``aem_checkpoint``: the
    directory of an ``aem-bench pretrain`` run, whose vision encoder is used (and whose image size
    the camera must have). ``freeze``: keep the encoder's weights fixed (default: frozen for
    pretrained encoders and AEM, trained by the RL loss for the ResNet). ``crop_size``: centre
    crop side (default: 90% of the camera side, as the policies; AEM: its pretraining crop).
    ``state_keys``: the flat entries put next to the features (default: every one but the image,
    in the space's order).
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        encoder: str = "resnet",
        encoder_options: dict | None = None,
        freeze: bool | None = None,
        crop_size: int | None = None,
        aem_checkpoint: str | os.PathLike | None = None,
        normalized_images: bool = True,
        image_key: str = "rgb",
        state_keys: tuple[str, ...] | None = None,
    ):
        image_space, state_keys, state_size = _subspaces(observation_space, image_key,
                                                         state_keys)
        self.channels_first = is_image_space_channels_first(image_space)
        height, width = image_space.shape[1:] if self.channels_first else image_space.shape[:2]
        if aem_checkpoint is not None:
            vision, aem_crop = _aem_vision(aem_checkpoint, (height, width))
            crop_size = crop_size or aem_crop
            freeze = True if freeze is None else freeze
        else:
            vision = make_encoder(encoder, **(encoder_options or {}))
            freeze = vision.pretrained if freeze is None else freeze
        crop_size = crop_size or int(0.9 * min(height, width))
        if crop_size > min(height, width):
            raise ValueError(f"crop_size {crop_size} is larger than the {height}x{width} camera")
        super().__init__(observation_space, vision.feature_dim + state_size)
        self.encoder = vision
        self.frozen = freeze
        self.encoder.requires_grad_(not freeze)
        self.crop_size = crop_size
        self.normalized_images = normalized_images
        self.image_key, self.state_keys = image_key, state_keys

    def train(self, mode: bool = True) -> ZooFeaturesExtractor:
        super().train(mode)
        if self.frozen:  # a frozen encoder stays in eval mode (no dropout, fixed statistics)
            self.encoder.eval()
        return self

    def frames(self, images: torch.Tensor) -> torch.Tensor:
        """SB3's float images -> the uint8 (N, H, W, 3) camera frames, exactly (x * 255 of a
        uint8 / 255 rounds back to it)."""
        if self.channels_first:
            images = images.permute(0, 2, 3, 1)
        if self.normalized_images:
            images = images * 255.0
        return images.round().clamp(0, 255).to(torch.uint8)

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        frames = crop_images(self.frames(observations[self.image_key]), self.crop_size,
                             random=False)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            features = self.encoder(frames)
        return torch.cat([features.float(), *(observations[key].float()
                                              for key in self.state_keys)], dim=1)


def zoo_policy_kwargs(encoder: str = "resnet", encoder_options: dict | None = None,
                      **extractor_kwargs) -> dict:
    """``policy_kwargs`` for a ``MultiInputPolicy`` / ``MultiInputLstmPolicy`` with a
    :class:`ZooFeaturesExtractor` (``extractor_kwargs``: its other arguments)."""
    return {
        "features_extractor_class": ZooFeaturesExtractor,
        "features_extractor_kwargs": {"encoder": encoder, "encoder_options": encoder_options,
                                      "normalized_images": True, **extractor_kwargs},
        "normalize_images": True,
    }


def _subspaces(observation_space, image_key: str,
               state_keys: tuple[str, ...] | None) -> tuple[spaces.Box, tuple[str, ...], int]:
    """The image space, the flat keys to concatenate and their total size."""
    keys = list(getattr(observation_space, "spaces", {}))
    if not isinstance(observation_space, spaces.Dict) or image_key not in keys:
        raise ValueError(f"ZooFeaturesExtractor needs a Dict observation space with an "
                         f"'{image_key}' camera image, got {observation_space}")
    image = observation_space[image_key]
    if len(image.shape) != 3 or 3 not in (image.shape[0], image.shape[-1]):
        raise ValueError(f"ZooFeaturesExtractor needs an RGB '{image_key}' of shape (H, W, 3) "
                         f"or (3, H, W), got {image.shape}")
    state_keys = tuple(key for key in keys if key != image_key) if state_keys is None else tuple(
        state_keys)
    bad = [key for key in state_keys if key not in keys or len(observation_space[key].shape) != 1]
    if bad:
        raise ValueError(f"state_keys {bad} are not flat entries of the observation space "
                         f"{observation_space}")
    return image, state_keys, sum(observation_space[key].shape[0] for key in state_keys)


def _aem_vision(checkpoint: str | os.PathLike, camera: tuple[int, int]):
    """The vision encoder of an AEM pretraining run and its crop size."""
    from aem_bench.aem_history import load_aem

    aem = load_aem(checkpoint)
    if tuple(aem.config.image_size) != tuple(camera):
        raise ValueError(f"{checkpoint} was pretrained on {tuple(aem.config.image_size)} "
                         f"images, the camera gives {tuple(camera)}: make the environment with "
                         f"camera_size={tuple(aem.config.image_size)}")
    return aem.encoder.vision, aem.config.crop_size
