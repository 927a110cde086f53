"""Does a policy act on its memory? The memory-swap test, beside the probe.

A linear probe says whether a memory vector holds the hidden fact (:mod:`aem_bench.probe`); it
cannot say whether the policy's head reads it. This test asks the head. At each probed row of the
expert's episodes (the decision step, or a pooled probe's rows) the policy predicts its action
chunk twice from the same frame, the same joint state and the same sampling noise: once with the
memory vector it computed over its own episode, once with the memory vector of a donor row, a
row of another episode whose probed label differs (another hidden fact, another number of moves
done), drawn at random. If the head acts on what its memory holds, its own memory's chunk is
closer to what the expert did than the swapped one: the test counts how often (ties half), with a
95% Wilson interval over rows. About 50% says the memory does not steer the action, whatever the
probe reads from it: "held but unused". Well above 50% says the head uses it.

Errors are mean squared differences over the chunk's first ``action_steps`` actions (the ones
executed before the next prediction), in the policy's normalised action units. Only policies whose
memory is one vector beside the frame (``gru-dp``, ``aem-dp``) take the test; a frame stack's
memory is its earlier frames, which this test does not swap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from aem_bench.stats import wilson_interval


@dataclass
class SwapRows:
    """The probed rows of one probe: per row the head's inputs and what the expert did."""

    features: list[torch.Tensor] = field(default_factory=list)  # (To, F): frames up to the step
    state: list[torch.Tensor] = field(default_factory=list)  # (To, D)
    memory: list[torch.Tensor] = field(default_factory=list)  # (M,): the memory vector at the step
    expert: list[torch.Tensor] = field(default_factory=list)  # (Ta, A): the expert's next actions
    labels: list[int] = field(default_factory=list)

    def add(self, policy, features: torch.Tensor, state: torch.Tensor, memory: torch.Tensor,
            actions: torch.Tensor, step: int, label: int) -> None:
        """Row ``step`` of one episode, from its per-step features, states, memory vectors and
        actions (T, *)."""
        horizon = policy.config.obs_horizon
        window = torch.arange(step - horizon + 1, step + 1).clamp(min=0)
        ahead = torch.arange(step, step + policy.config.action_steps).clamp(max=len(actions) - 1)
        self.features.append(features[window])
        self.state.append(state[window])
        self.memory.append(memory[step])
        self.expert.append(actions[ahead])
        self.labels.append(int(label))


def takes_swap_test(policy) -> bool:
    """A policy whose memory is one vector beside the frame (a recurrent memory or AEM's
    history)."""
    return hasattr(policy, "predict_action_chunk") and (
        getattr(policy, "memory", None) is not None or getattr(policy, "history", None) is not None)


def donors(labels: np.ndarray, seed: int) -> np.ndarray:
    """For each row, a random row whose label differs."""
    rng = np.random.default_rng(seed)
    out = np.empty(len(labels), dtype=int)
    for index, label in enumerate(labels):
        others = np.flatnonzero(labels != label)
        if len(others) == 0:
            raise ValueError("the swap test needs rows with at least two labels")
        out[index] = rng.choice(others)
    return out


@torch.inference_mode()
def swap_test(policy, rows: SwapRows, seed: int = 0, batch: int = 256) -> dict:
    """Predict each row's chunk with its own and a donor's memory vector (the same noise) and
    compare both with the expert's actions."""
    labels = np.array(rows.labels)
    donor = donors(labels, seed)
    features, state = torch.stack(rows.features), torch.stack(rows.state)
    memory, expert = torch.stack(rows.memory), torch.stack(rows.expert)
    expert = policy.action_normalizer.normalize(expert)
    errors = {"own": [], "swapped": []}
    for start in range(0, len(labels), batch):
        part = slice(start, start + batch)
        for name, vectors in (("own", memory[part]), ("swapped", memory[donor[part]])):
            generator = torch.Generator().manual_seed(seed + start)  # the same noise for both
            chunk = policy.predict_action_chunk({"features": features[part], "state": state[part],
                                                 "memory_vector": vectors}, generator)
            chunk = policy.action_normalizer.normalize(chunk[:, :expert.shape[1]])
            errors[name].append(((chunk - expert[part]) ** 2).mean((1, 2)))
    own, swapped = torch.cat(errors["own"]).numpy(), torch.cat(errors["swapped"]).numpy()
    score = float((own < swapped).sum() + 0.5 * (own == swapped).sum())
    rate = score / len(own)
    low, high = wilson_interval(score, len(own))
    return {"memory_use_rate": rate, "memory_use_ci95": [low, high], "memory_use_rows": len(own),
            "own_memory_error_median": float(np.median(own)),
            "swapped_memory_error_median": float(np.median(swapped))}
