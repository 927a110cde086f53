"""A recurrent memory trained with the action head through whole episodes (``gru-dp``, ``gru-flow``).

The memory baseline without AEM pretraining: a GRU reads, at every control step t, the frame's
features, the joint state and the action taken at t-1, and its output at t joins the head's
condition. It is trained by behaviour cloning through time over whole episodes, from step 0, so
the only thing that can make it keep a fact is having to act on it later: the loss at the decision
step reaches back, through the recurrence, to the step where the fact was visible. This is the
paper's "Mamba without pretraining" ablation at this suite's horizons (hundreds of steps, not a
16-step window), with a GRU because a whole-episode backward pass through a pure-PyTorch Mamba
scan is too slow on a CPU.

The frame encoder is frozen (typically the ResNet of the single-frame DP trained on the same
demonstrations, ``encoder_checkpoint``), so frames are encoded once per dataset and a training step
costs the GRU over a few episodes plus the head on a batch of their steps.

At run time :meth:`RecurrentMemory.step` advances the same recurrence one control step at a time:
the cost per step does not grow with the episode.
"""

from __future__ import annotations

import torch
from torch import nn


class RecurrentMemory(nn.Module):
    """(features, normalised state, normalised previous action) per step -> a memory vector."""

    def __init__(self, feature_dim: int, state_dim: int, action_dim: int, hidden: int,
                 layers: int, use_actions: bool, input_dropout: float):
        super().__init__()
        self.use_actions = use_actions
        inputs = feature_dim + state_dim + (action_dim if use_actions else 0)
        self.input_norm = nn.LayerNorm(inputs)
        self.dropout = nn.Dropout(input_dropout)
        self.gru = nn.GRU(inputs, hidden, num_layers=layers, batch_first=True)
        self.hidden = hidden
        self.layers = layers

    def inputs(self, features: torch.Tensor, state: torch.Tensor,
               previous_actions: torch.Tensor) -> torch.Tensor:
        """(..., F), (..., D), (..., A) -> the GRU's input (..., F + D [+ A])."""
        parts = [features, state] + ([previous_actions] if self.use_actions else [])
        return self.dropout(self.input_norm(torch.cat(parts, -1)))

    def forward(self, features: torch.Tensor, state: torch.Tensor,
                previous_actions: torch.Tensor) -> torch.Tensor:
        """Whole sequences from step 0: (B, T, *) each -> memory (B, T, hidden), entry t having
        read steps 0 .. t. Padding after an episode's end does not reach its earlier entries."""
        out, _ = self.gru(self.inputs(features, state, previous_actions))
        return out

    def initial_state(self, batch: int, device=None) -> torch.Tensor:
        return torch.zeros(self.layers, batch, self.hidden, device=device)

    def step(self, features: torch.Tensor, state: torch.Tensor, previous_action: torch.Tensor,
             hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step (B, *) each -> memory (B, hidden) and the next recurrent state."""
        out, hidden = self.gru(self.inputs(features, state, previous_action)[:, None], hidden)
        return out[:, 0], hidden
