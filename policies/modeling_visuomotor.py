"""A visuomotor policy: the frame features and state vectors of an observation window, joined by
a memory vector when the policy has a memory, condition an action head that generates a chunk of
future actions. The words (memory, memory vector, history vector, recurrent state, state vector)
are the README's, under "Vocabulary".

Training (``compute_loss``): encode the observation window (or take the frozen encoder's cached
features), normalise the expert's action chunk to [-1, 1], and return the head's loss.

Run time (``reset`` / ``act``): keep the last ``obs_horizon`` observations with their features,
each frame encoded once; when the queue of planned actions is empty, sample a chunk and queue its
first ``action_steps`` actions. Observation t predicts actions t .. t + pred_horizon - 1, as in
the training windows.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np
import torch
from torch import nn

from aem_bench.policies.configuration_visuomotor import PolicyConfig
from aem_bench.policies.encoders import build_encoder
from aem_bench.policies.heads import make_head
from aem_bench.policies.memory import RecurrentMemory
from aem_bench.policies.preprocessing import MinMaxNormalizer, crop_images


class VisuomotorPolicy(nn.Module):
    """A policy of the zoo. Its memory, if any, is one of two modules, named as the weights of
    saved checkpoints name them: ``history``, AEM's history encoder (config ``history``), whose
    memory vector is the history vector; or ``memory``, a recurrent memory (config ``memory``)."""

    def __init__(self, config: PolicyConfig, load_encoder_weights: bool = True):
        super().__init__()
        self.config = config
        self.encoder, self.frozen_encoder = build_encoder(config, load_encoder_weights)
        feature_dim = self.encoder.feature_dim
        self.readout = None
        self.history = None
        if config.history is not None:
            from aem_bench.policies.configuration_aem import AEMConfig
            from aem_bench.policies.modeling_aem import HistoryEncoder

            self.history = HistoryEncoder(AEMConfig.from_dict(config.history),
                                          feature_dim=feature_dim)
            self.history.requires_grad_(not config.history_frozen)
            vector_dim = self._add_readout(self.history.config.d_model)
            if config.history_fusion == "add":
                self.history_to_feature = nn.Linear(vector_dim, feature_dim)
            feature_dim = {"concat": feature_dim + vector_dim, "add": feature_dim,
                           "memory_only": vector_dim}[config.history_fusion]
        self.memory = None
        if config.memory is not None:
            self.memory = RecurrentMemory(feature_dim, config.state_dim, config.action_dim,
                                          config.memory_dim, config.memory_layers,
                                          config.memory_actions, config.memory_dropout)
            feature_dim += self._add_readout(config.memory_dim)
        cond_dim = config.obs_horizon * (feature_dim + config.state_dim)
        self.head = make_head(config, cond_dim)
        self.state_normalizer = MinMaxNormalizer(config.state_dim, "state")
        self.action_normalizer = MinMaxNormalizer(config.action_dim, "actions")
        self.train()  # puts a frozen encoder in eval mode from the start
        self.reset()

    def _add_readout(self, memory_dim: int) -> int:
        """Build the memory's readout if the config asks for one; the width the head reads."""
        if self.config.memory_readout is None:
            return memory_dim
        self.readout = nn.Linear(memory_dim, self.config.readout_dim)
        return self.config.readout_dim

    def train(self, mode: bool = True) -> VisuomotorPolicy:
        super().train(mode)
        if self.frozen_encoder:
            self.encoder.eval()  # a frozen encoder is a fixed function: no dropout, no crops
        return self

    # ----------------------------------------------------------------------------- statistics

    def fit_normalization(self, state: np.ndarray, actions: np.ndarray) -> None:
        """Set the min/max stats from all state (N, state_dim) and action (N, action_dim) rows."""
        self.state_normalizer.fit(state)
        self.action_normalizer.fit(actions)

    # ----------------------------------------------------------------------------- features

    def encode(self, rgb: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """uint8 frames (N, H, W, 3) -> (N, feature_dim): a random crop while training a trainable
        encoder, else the centre crop."""
        if tuple(rgb.shape[1:3]) != tuple(self.config.image_size):
            raise ValueError(f"images are {tuple(rgb.shape[1:3])} but the policy was built for "
                             f"{tuple(self.config.image_size)}")
        random_crop = self.training and not self.frozen_encoder
        crops = crop_images(rgb, self.config.crop_size, random_crop, generator)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen_encoder):
            return self.encoder(crops)

    def _global_cond(self, features: torch.Tensor, state: torch.Tensor,
                     memory_vector: torch.Tensor | None = None) -> torch.Tensor:
        """features (B, To, F), state vectors (B, To, D) [, memory_vector (B, M): the recurrent
        memory's output or AEM's history vector] -> the head's condition."""
        if self.readout is not None and memory_vector is not None:
            # The head acts on the estimate; only the readout's own loss trains the readout.
            memory_vector = torch.sigmoid(self.readout(memory_vector)).detach()
        if self.memory is not None:  # one frame, joined by the memory vector
            features = torch.cat([features, memory_vector[:, None]], -1)
        elif memory_vector is not None:  # AEM: one frame, fused with the history vector
            fusion = self.config.history_fusion
            features = {"concat": lambda f: torch.cat([f, memory_vector[:, None]], -1),
                        "add": lambda f: f + self.history_to_feature(memory_vector)[:, None],
                        "memory_only": lambda f: memory_vector[:, None]}[fusion](features)
        return torch.cat([features, self.state_normalizer.normalize(state)], dim=-1).flatten(1)

    def _batch_memory_vector(self, batch: dict) -> torch.Tensor | None:
        """A batch's memory vectors: given in "memory_vector" (the recurrent memory's at run
        time, a frozen history's precomputed ones), or AEM's over the batch's window of steps;
        None for a policy without a memory."""
        if self.memory is None and self.history is None:
            return None
        if "memory_vector" in batch:
            return batch["memory_vector"]
        return self.history.window_history(batch["window_features"], batch["window_actions"],
                                           batch["window_valid"])

    def _features(self, batch: dict, generator: torch.Generator | None) -> torch.Tensor:
        if "features" in batch:  # a frozen encoder's cached features
            return batch["features"]
        rgb = batch["rgb"]
        return self.encode(rgb.flatten(0, 1), generator).reshape(*rgb.shape[:2], -1)

    # ----------------------------------------------------------------------------- training

    def compute_loss(
        self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The head's loss on a batch {"rgb": (B, To, H, W, 3) uint8 or "features": (B, To, F),
        "state": (B, To, D), "actions": (B, Tp, A)}, with AEM's history encoder also its history
        vectors, "memory_vector" (B, M), or the steps it reads, "window_*". ``generator`` drives
        crops and noise.

        With a recurrent memory, or AEM's history encoder trained through whole episodes, the
        batch is whole episodes instead (``EpisodeBatches``): "features" (E, T, F), "state"
        (E, T, D), "previous_actions" and "taken_actions" (E, T, A), and the steps to train on,
        "rows" (B, 2) as (episode, step), with their "actions" (B, Tp, A)."""
        if self.config.state_noise > 0:
            batch = {**batch, "state": self._noisy_state(batch["state"], generator)}
        if "rows" in batch:  # whole episodes: the memory runs from step 0
            if self.memory is not None:
                memory_vectors = self._memory_sequence(batch["features"], batch["state"],
                                                       batch["previous_actions"])
            else:
                memory_vectors = self.history.history(batch["features"], batch["taken_actions"])
            episode, step = batch["rows"].unbind(1)
            return self._loss(batch, batch["features"][episode, step][:, None],
                              batch["state"][episode, step][:, None],
                              memory_vectors[episode, step], generator)
        return self._loss(batch, self._features(batch, generator), batch["state"],
                          self._batch_memory_vector(batch), generator)

    def _loss(self, batch: dict, features: torch.Tensor, state: torch.Tensor,
              memory_vector: torch.Tensor | None,
              generator: torch.Generator | None) -> torch.Tensor | dict[str, torch.Tensor]:
        """The head's loss on the batch's action chunks; with a readout, the sum with the
        readout's loss on the batch's "readout_target" (B, readout_dim), each part named."""
        cond = self._global_cond(features, state, memory_vector)
        action_loss = self.head.loss(self.action_normalizer.normalize(batch["actions"]), cond,
                                     generator)
        if self.readout is None:
            return action_loss
        readout_loss = nn.functional.binary_cross_entropy_with_logits(
            self.readout(memory_vector), batch["readout_target"])
        return {"loss": action_loss + self.config.readout_weight * readout_loss,
                "action_loss": action_loss, "readout_loss": readout_loss}

    @property
    def trains_history_through_episodes(self) -> bool:
        """AEM's history encoder trained with the head recurrently over whole episodes, as it
        runs."""
        return (self.history is not None and not self.config.history_frozen
                and self.history.config.inference_window is None)

    def _noisy_state(self, state: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """The state vectors with Gaussian noise of std ``state_noise`` in normalised units."""
        noise = torch.randn(state.shape, generator=generator, device=state.device)
        normalizer = self.state_normalizer
        return normalizer.unnormalize(normalizer.normalize(state)
                                      + self.config.state_noise * noise)

    # ----------------------------------------------------------------------------- sampling

    @torch.inference_mode()
    def predict_action_chunk(
        self, obs_batch: dict[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """{"rgb" (B, To, H, W, 3) or "features" (B, To, F), "state": (B, To, D)[,
        "memory_vector": (B, M)]} -> actions (B, Tp, A), unnormalised."""
        cond = self._global_cond(self._features(obs_batch, None), obs_batch["state"],
                                 self._batch_memory_vector(obs_batch))
        return self.action_normalizer.unnormalize(self.head.sample(cond, generator))

    # ----------------------------------------------------------------------------- run time

    def reset(self, seed: int | None = None) -> None:
        """Start an episode: forget past observations and planned actions, reseed the sampler."""
        self._observations: deque[dict[str, torch.Tensor]] = deque(maxlen=self.config.obs_horizon)
        self._actions: deque[np.ndarray] = deque()
        self.last_encoder_ms: float | None = None
        device = self.state_normalizer.min.device
        if self.memory is not None:
            self._memory_recurrent_state = self.memory.initial_state(1, device)
            self._memory_steps = 0
            self._previous_action = None  # normalised; zeros before the first action
            self._memory_vector: torch.Tensor | None = None
        if self.history is not None:
            window = self.history.config.inference_window
            # Recurrent: the Mamba's recurrent state after every token read so far, and the
            # frames and actions since, read in one go at the next prediction (the same outputs
            # as one token at a time, cheaper). Windowed: the last steps' frames and actions,
            # re-read at each prediction.
            self._history_is_recurrent = window is None
            self._history_recurrent_state = (self.history.initial_state(1, device)
                                             if window is None else None)
            self._pending: list[tuple[str, object]] = []
            self._history_window: deque[dict] = deque(maxlen=window)
            self._history_vector: torch.Tensor | None = None
        self._generator = torch.Generator(device=device)
        if seed is None:
            self._generator.seed()  # fresh entropy; a new Generator alone has a fixed seed
        else:
            self._generator.manual_seed(int(seed))

    @torch.inference_mode()
    def act(self, observation: dict) -> np.ndarray:
        """{"rgb": (H, W, 3) uint8, "qpos": (16,)[, "oracle": (K,)][, "fact": (F,)]} -> the
        next action, (action_dim,) float32."""
        device = self.state_normalizer.min.device
        missing = [key for key in self.config.state_keys if key not in observation]
        if missing:
            raise ValueError(f"the policy needs observation keys {missing}; a policy that reads "
                             f"the oracle or the fact needs the task made with "
                             f"obs_mode='rgb+oracle'")
        state = np.concatenate([np.asarray(observation[key], dtype=np.float32).ravel()
                                for key in self.config.state_keys])
        if state.shape != (self.config.state_dim,):
            sizes = {key: int(np.size(observation[key])) for key in self.config.state_keys}
            raise ValueError(f"the policy was trained on a state of length {self.config.state_dim}"
                             f" ({', '.join(self.config.state_keys)}), the observation gives "
                             f"{sizes}: a task whose observation changed since its demonstrations?")
        self._observations.append({
            "rgb": torch.as_tensor(np.ascontiguousarray(observation["rgb"]), device=device),
            "state": torch.as_tensor(state, device=device),
        })
        if self.history is not None:  # AEM's history encoder reads every frame
            self._see_frame(self._observations[-1])
        self.last_encoder_ms = None  # what the evaluator reports as encoder latency
        if self.memory is not None:  # the memory reads every frame, as it was trained
            tic = time.perf_counter()
            self._remember(self._observations[-1])
            memory_ms = (time.perf_counter() - tic) * 1e3
        if not self._actions:
            tic = time.perf_counter()
            memory_vector = (self._current_history_vector()[None] if self.history is not None
                             else None)
            if self.memory is not None:
                memory_vector = self._memory_vector[None]
            # Encode each frame once, when it is first needed: a frame stack costs one new frame
            # per control step, not obs_horizon.
            self._encode_frames(list(self._observations))
            if device.type == "cuda":  # kernels run asynchronously: wait before reading the clock
                torch.cuda.synchronize(device)
            self.last_encoder_ms = (time.perf_counter() - tic) * 1e3
            if self.memory is not None:
                self.last_encoder_ms += memory_ms
            # Before obs_horizon steps have passed, repeat the first frame, as the training
            # windows do at the start of an episode.
            window = list(self._observations)
            window = [window[0]] * (self.config.obs_horizon - len(window)) + window
            obs_batch = {key: torch.stack([o[key] for o in window])[None]
                         for key in ("features", "state")}
            if memory_vector is not None:
                obs_batch["memory_vector"] = memory_vector
            chunk = self.predict_action_chunk(obs_batch, self._generator)[0]
            self._actions.extend(chunk[: self.config.action_steps].cpu().numpy())
        action = self._actions.popleft().astype(np.float32)
        if self.history is not None:
            self._take_action(torch.as_tensor(action, device=device))
        if self.memory is not None:
            self._previous_action = self.action_normalizer.normalize(
                torch.as_tensor(action, device=device))
        return action

    # ----------------------------------------------------------------------------- memory

    @property
    def memory_name(self) -> str | None:
        """What this policy remembers the past with: "gru", "aem", "framestack" or None."""
        if self.memory is not None:
            return self.config.memory
        if self.history is not None:
            return "aem"
        return "framestack" if self.config.obs_horizon > 1 else None

    @torch.inference_mode()
    def memory_trace(self, features: torch.Tensor, state: torch.Tensor,
                     actions: torch.Tensor) -> torch.Tensor:
        """One episode's frame features (T, F), state vectors (T, D) and actions taken (T, A) ->
        (T, M): what the policy remembers at each step, as ``act()`` computes it (the memory
        vector: the recurrent memory's output or AEM's history vector; or a frame stack's
        features)."""
        if self.memory is not None:
            return self._memory_sequence(features[None], state[None], actions.roll(1, 0)[None])[0]
        if self.history is not None:
            window = self.history.config.inference_window
            if window is None:
                return self.history.history(features[None], actions[None])[0]
            steps = torch.arange(len(features))[:, None] + torch.arange(1 - window, 1)
            valid = steps >= 0
            steps = steps.clamp(min=0)
            return self.history.window_history(features[steps], actions[steps], valid)
        if self.config.obs_horizon > 1:
            steps = (torch.arange(len(features))[:, None]
                     + torch.arange(1 - self.config.obs_horizon, 1)).clamp(min=0)
            return features[steps].flatten(1)
        raise ValueError(f"a {self.config.policy_type} policy has no memory: it reads one frame")

    def _memory_sequence(self, features: torch.Tensor, state: torch.Tensor,
                         previous_actions: torch.Tensor) -> torch.Tensor:
        """The recurrent memory over whole episodes from step 0: (E, T, *) each, the action
        before each step (the first is ignored) -> memory vectors (E, T, memory_dim), step t
        holding the vector of the last step read at or before it (every ``memory_stride``-th)."""
        stride = self.config.memory_stride
        previous = self.action_normalizer.normalize(previous_actions[:, ::stride])
        previous[:, 0] = 0.0  # no action before the first step, as in reset()
        out = self.memory(features[:, ::stride], self.state_normalizer.normalize(
            state[:, ::stride]), previous)
        return out[:, torch.arange(features.shape[1], device=out.device) // stride]

    def _remember(self, observation: dict) -> None:
        """Advance the recurrent memory on every ``memory_stride``-th step: its frame, state
        vector and the action before; hold its memory vector in between."""
        self._memory_steps += 1
        if (self._memory_steps - 1) % self.config.memory_stride:
            return
        self._encode_frames([observation])
        previous = (self._previous_action if self._previous_action is not None
                    else torch.zeros(self.config.action_dim, device=observation["state"].device))
        vector, self._memory_recurrent_state = self.memory.step(
            observation["features"][None], self.state_normalizer.normalize(observation["state"])[None],
            previous[None], self._memory_recurrent_state)
        self._memory_vector = vector[0]

    # ----------------------------------------------------------------------------- AEM history

    def _encode_frames(self, observations: list[dict]) -> None:
        """Give every observation without "features" its features, in one batch."""
        new = [o for o in observations if "features" not in o]
        if new:
            for o, feature in zip(new, self.encode(torch.stack([o["rgb"] for o in new]))):
                o["features"] = feature

    def _see_frame(self, observation: dict) -> None:
        if self._history_is_recurrent:
            self._pending.append(("frame", observation))
        else:
            self._history_window.append({"obs": observation, "action": None})

    def _take_action(self, action: torch.Tensor) -> None:
        if self._history_is_recurrent:
            if self.history.config.use_actions:
                self._pending.append(("action", action))
        else:
            self._history_window[-1]["action"] = action

    @torch.inference_mode()  # run time only: a history fine-tuned with the head has gradients
    def _current_history_vector(self) -> torch.Tensor:
        """The history vector at the latest frame."""
        if self._history_is_recurrent:
            if any(kind == "frame" for kind, _ in self._pending):  # else: nothing new seen
                self._encode_frames([entry for kind, entry in self._pending if kind == "frame"])
                tokens = torch.cat([
                    self.history.vision_token(entry["features"][None]) if kind == "frame"
                    else self.history.action_token(entry[None]) for kind, entry in self._pending])
                out, self._history_recurrent_state = self.history(
                    tokens[None], self._history_recurrent_state)
                last_frame = max(i for i, (kind, _) in enumerate(self._pending) if kind == "frame")
                self._history_vector = out[0, last_frame]
                self._pending.clear()
            return self._history_vector
        steps = list(self._history_window)
        self._encode_frames([step["obs"] for step in steps])
        window = self.history.config.inference_window
        pad = window - len(steps)
        feature = steps[-1]["obs"]["features"]
        no_action = torch.zeros(self.config.action_dim, device=feature.device)
        features = torch.stack([feature] * pad + [s["obs"]["features"] for s in steps])[None]
        actions = torch.stack([no_action] * pad + [
            s["action"] if s["action"] is not None else no_action for s in steps])[None]
        valid = torch.tensor([False] * pad + [True] * len(steps), device=feature.device)[None]
        return self.history.window_history(features, actions, valid)[0]
