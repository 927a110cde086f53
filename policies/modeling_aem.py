"""AEM: the history encoder (used by ``aem-dp`` / ``aem-flow``) and its pretraining model.

:class:`HistoryEncoder` turns a step's visual feature and action into tokens and runs a Mamba
stack over them. Its output at the last vision token is the history vector. It runs either over a
token sequence (``forward``) or one token at a time (``step``, carrying each layer's state), with
equal results, so a control step costs the same at any point of an episode.

:class:`AEMPretrainer` masks whole steps of a window, encodes the visible tokens in order,
scatters the outputs back into the window next to learned mask tokens, and a small Transformer
decoder (which also sees the history vector) reconstructs each masked step's visual content and
action. Loss: MSE plus (1 - cosine) on vision, MSE on actions.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from aem_bench.policies.configuration_aem import AEMConfig
from aem_bench.policies.encoders import build_encoder
from aem_bench.policies.mamba import Mamba
from aem_bench.policies.preprocessing import MinMaxNormalizer, crop_images

VISION, ACTION = 0, 1  # token types


class ResidualMamba(nn.Module):
    """Pre-norm residual block, as in mamba_ssm's MixerModel: x + Mamba(LayerNorm(x))."""

    def __init__(self, config: AEMConfig):
        super().__init__()
        self.norm = nn.LayerNorm(config.d_model)
        self.mixer = Mamba(config.d_model, d_state=config.d_state, d_conv=config.d_conv,
                           expand=config.expand)

    def forward(self, x, state=None):
        y, state = self.mixer.forward_with_state(self.norm(x), state)
        return x + y, state

    def step(self, x, state):
        y, state = self.mixer.step(self.norm(x), state)
        return x + y, state


class HistoryEncoder(nn.Module):
    """Visual features and actions -> interleaved tokens -> Mamba -> per-token outputs."""

    def __init__(self, config: AEMConfig, load_encoder_weights: bool = True,
                 feature_dim: int | None = None):
        """``feature_dim`` given: no vision module of its own (a policy that owns the encoder
        hands it the features)."""
        super().__init__()
        self.config = config
        self.vision = None
        self.frozen_vision = True
        if feature_dim is None:
            self.vision, self.frozen_vision = build_encoder(config, load_encoder_weights)
            feature_dim = self.vision.feature_dim
        self.feature_dim = feature_dim
        self.vision_proj = nn.Linear(feature_dim, config.d_model)
        self.action_proj = nn.Linear(config.action_dim, config.d_model)
        self.type_embed = nn.Parameter(torch.zeros(2, config.d_model))
        self.layers = nn.ModuleList(ResidualMamba(config) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.action_normalizer = MinMaxNormalizer(config.action_dim, "actions")
        nn.init.normal_(self.type_embed, std=0.02)

    def encode_frames(self, rgb: torch.Tensor, generator=None) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> (N, feature_dim), cropped like the policies' frames."""
        random_crop = self.training and not self.frozen_vision
        crops = crop_images(rgb, self.config.crop_size, random_crop, generator)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen_vision):
            return self.vision(crops)

    def vision_token(self, features: torch.Tensor) -> torch.Tensor:
        return self.vision_proj(features) + self.type_embed[VISION]

    def action_token(self, actions: torch.Tensor) -> torch.Tensor:
        return self.action_proj(self.action_normalizer.normalize(actions)) + self.type_embed[ACTION]

    def interleave(self, features: torch.Tensor, actions: torch.Tensor | None) -> torch.Tensor:
        """(B, T, F) features and (B, T, A) actions -> (B, 2T, d): v_1, a_1, ..., v_T, a_T
        (only v_1 .. v_T without actions)."""
        vision = self.vision_token(features)
        if actions is None or not self.config.use_actions:
            return vision
        return torch.stack([vision, self.action_token(actions)], dim=2).flatten(1, 2)

    def forward(self, tokens: torch.Tensor, state: list | None = None):
        """Tokens (B, L, d) -> outputs (B, L, d) and every layer's state after the last token.
        ``state`` (from a previous call or ``step``) continues a sequence: running it in chunks
        gives the outputs of running it whole."""
        new_state = []
        for i, layer in enumerate(self.layers):
            tokens, layer_state = layer(tokens, None if state is None else state[i])
            new_state.append(layer_state)
        return self.norm(tokens), new_state

    def initial_state(self, batch: int, device=None) -> list:
        return [layer.mixer.initial_state(batch, device) for layer in self.layers]

    def step(self, token: torch.Tensor, state: list) -> tuple[torch.Tensor, list]:
        """One token (B, d) -> output (B, d), with every layer's state carried."""
        new_state = []
        for layer, layer_state in zip(self.layers, state):
            token, layer_state = layer.step(token, layer_state)
            new_state.append(layer_state)
        return self.norm(token), new_state

    def history(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """History vectors at every step of whole sequences: features (B, T, F) and the actions
        taken (B, T, A) -> (B, T, d), entry t read at v_t (so it has seen a_1 .. a_{t-1} only)."""
        out, _ = self.forward(self.interleave(features, actions))
        return out[:, ::2] if self.config.use_actions else out

    def window_history(self, features: torch.Tensor, actions: torch.Tensor,
                       valid: torch.Tensor) -> torch.Tensor:
        """The history vector at the last step of windows: features (B, w, F), the actions taken
        (B, w, A; the last one is not read) and valid (B, w) bool, False for steps before the
        episode began, whose tokens are zeros (the same padding at training and run time)."""
        tokens = self.interleave(features, actions)
        token_valid = (torch.stack([valid, valid], 2).flatten(1) if self.config.use_actions
                       else valid)
        tokens = tokens * token_valid[..., None]
        if self.config.use_actions:
            tokens = tokens[:, :-1]  # the current action is what the policy is about to choose
        return self.forward(tokens)[0][:, -1]


class AEMPretrainer(nn.Module):
    def __init__(self, config: AEMConfig, load_encoder_weights: bool = True):
        super().__init__()
        self.config = config
        self.encoder = HistoryEncoder(config, load_encoder_weights)
        self.vision_target = config.vision_target or (
            "features" if self.encoder.frozen_vision else "pixels")
        config.require(self.vision_target != "features" or self.encoder.frozen_vision,
                       "vision_target='features' needs a frozen encoder: a trained encoder's "
                       "own features are a target that can collapse")
        target_dim = (3 * config.target_pixels**2 if self.vision_target == "pixels"
                      else self.encoder.feature_dim)
        d = config.d_model
        tokens_per_step = 2 if config.use_actions else 1
        self.mask_token = nn.Parameter(torch.zeros(d))
        self.position = nn.Parameter(torch.zeros(1 + tokens_per_step * config.window, d))
        layer = nn.TransformerEncoderLayer(d, config.decoder_heads, 2 * d, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.decoder = nn.TransformerEncoder(layer, config.decoder_layers,
                                             enable_nested_tensor=False)
        self.vision_head = nn.Linear(d, target_dim)
        self.action_head = nn.Linear(d, config.action_dim)
        self.future_head = (nn.Linear(d, config.future_actions * config.action_dim)
                            if config.future_actions else None)
        nn.init.normal_(self.mask_token, std=0.02)
        nn.init.normal_(self.position, std=0.02)
        self.train()

    def train(self, mode: bool = True) -> AEMPretrainer:
        super().train(mode)
        if self.encoder.frozen_vision:
            self.encoder.vision.eval()
        return self

    def pixel_targets(self, rgb: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> (N, 3 * p * p): the centre crop at p x p, centred on 0."""
        crops = crop_images(rgb, self.config.crop_size, random=False)
        x = crops.permute(0, 3, 1, 2).float() / 255.0
        x = F.interpolate(x, size=self.config.target_pixels, mode="area")
        return (x - 0.5).flatten(1)

    def masks(self, batch: int, window: int, generator=None) -> torch.Tensor:
        """(B, W) bool, True = masked. The last step's frame is always visible (it is where the
        history vector is read); the other steps are masked at ``mask_ratio``."""
        n_masked = round(self.config.mask_ratio * (window - 1))
        scores = torch.rand(batch, window - 1, generator=generator)
        masked = torch.zeros(batch, window, dtype=torch.bool)
        masked[:, : window - 1].scatter_(1, scores.argsort(1)[:, :n_masked], True)
        return masked

    def compute_loss(self, batch: dict, generator=None) -> dict[str, torch.Tensor]:
        """batch: {"rgb": (B, W, H, W, 3) uint8 or "features": (B, W, F) (frozen encoder),
        "actions": (B, W, A)}. Returns {"loss", "vision", "action"}."""
        cfg, enc = self.config, self.encoder
        actions = batch["actions"]
        size, window = actions.shape[:2]
        masked = self.masks(size, window, generator)
        visible = ~masked

        # Visual features of the visible steps only: masked frames are never encoded.
        if "features" in batch:
            features = batch["features"]
        else:
            rows = visible.flatten().nonzero().squeeze(1)
            encoded = enc.encode_frames(batch["rgb"].flatten(0, 1)[rows], generator)
            features = encoded.new_zeros(size * window, encoded.shape[1])
            features = features.index_copy(0, rows, encoded).reshape(size, window, -1)
        tokens = enc.interleave(features, actions)  # (B, L, d)

        # Token-level masks: a step's vision and action go together; the last action is always
        # a target (the history at v_W has not seen it).
        if cfg.use_actions:
            token_masked = torch.stack([masked, masked], dim=2).flatten(1)
            token_masked[:, -1] = True
        else:
            token_masked = masked
        n_visible = int((~token_masked[0]).sum())
        order = (~token_masked).float().argsort(dim=1, descending=True, stable=True)[:, :n_visible]
        visible_tokens = tokens.gather(1, order[..., None].expand(-1, -1, tokens.shape[-1]))
        encoded_tokens, _ = enc(visible_tokens)  # in their original order, gaps removed
        history = encoded_tokens[:, -1]  # the last visible token is the last frame's

        # Decoder: the window with encoder outputs where visible (or, through the bottleneck,
        # nowhere), mask tokens elsewhere, after the history vector.
        full = self.mask_token.expand(size, tokens.shape[1], -1).clone()
        if cfg.decoder_reads == "tokens":
            full = full.scatter(1, order[..., None].expand(-1, -1, full.shape[-1]),
                                encoded_tokens)
        decoded = self.decoder(torch.cat([history[:, None], full], 1)
                               + self.position[: full.shape[1] + 1])[:, 1:]

        if cfg.use_actions:
            vision_out, action_out = decoded[:, 0::2], decoded[:, 1::2]
            action_masked = token_masked[:, 1::2]
        else:
            vision_out, action_out, action_masked = decoded, None, None

        if self.vision_target == "pixels":
            rows = masked.flatten().nonzero().squeeze(1)
            target = self.pixel_targets(batch["rgb"].flatten(0, 1)[rows])
        else:
            target = features[masked]
        prediction = self.vision_head(vision_out[masked])
        vision_loss = F.mse_loss(prediction, target) + (
            1 - F.cosine_similarity(prediction, target, dim=-1)).mean()
        losses = {"vision": vision_loss}
        if action_out is not None:
            target_actions = enc.action_normalizer.normalize(actions)[action_masked]
            losses["action"] = F.mse_loss(self.action_head(action_out[action_masked]),
                                          target_actions)
        if self.future_head is not None:
            losses["future"] = cfg.future_weight * self.future_loss(encoded_tokens, order, actions)
        losses["loss"] = sum(losses.values())
        return losses

    def future_loss(self, encoded: torch.Tensor, order: torch.Tensor,
                    actions: torch.Tensor) -> torch.Tensor:
        """MSE of the next ``future_actions`` actions predicted from each visible frame's encoder
        output (which has read only the visible steps up to that frame), within the window."""
        tokens_per_step = 2 if self.config.use_actions else 1
        is_frame = order % tokens_per_step == 0
        step = order // tokens_per_step  # (B, n_visible)
        horizon, window = self.config.future_actions, actions.shape[1]
        future = step[..., None] + torch.arange(horizon)  # (B, n_visible, k)
        valid = is_frame[..., None] & (future < window)
        target = self.encoder.action_normalizer.normalize(actions)
        target = target.gather(1, future.clamp(max=window - 1).flatten(1)[..., None].expand(
            -1, -1, target.shape[-1])).reshape(*future.shape, -1)
        prediction = self.future_head(encoded).reshape(*future.shape, -1)
        return F.mse_loss(prediction[valid], target[valid])
