"""Does a policy act on what its memory holds? The memory-swap test, beside the probe.

A linear probe says whether a memory vector holds the hidden fact (:mod:`aem_bench.probe`); it
cannot say whether the policy's head reads it. This test asks the head. At each probed row of the
expert's episodes (the decision step, or a pooled probe's rows) the policy predicts its action
chunk three times from the same frame, the same joint state and the same sampling noise: with the
memory vector it computed over its own episode, with that of a random row of another episode
whose probed label is the same (the same hidden fact, the same number of moves done), and with
that of a random row whose label differs. Two rates, each with a 95% Wilson interval over rows
(ties count half):

- ``memory_use_rate``: how often its own memory brings the chunk closer to what the expert did
  than the other-label memory. About 50%: the head does not act on its memory at all.
- ``fact_use_rate``: how often the same-label memory does. A memory carries more than the fact
  (where the arm is going, how long the episode has run); swapping in another episode's memory
  with the same fact keeps the fact and changes the rest. About 50%: whatever the head reads from
  its memory, it is not the fact. Well above 50%: the head acts on the fact it holds.

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
    episodes: list[int] = field(default_factory=list)  # the episode each row is from

    def add(self, policy, features: torch.Tensor, state: torch.Tensor, memory: torch.Tensor,
            actions: torch.Tensor, step: int, label: int, episode: int) -> None:
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
        self.episodes.append(int(episode))


def takes_swap_test(policy) -> bool:
    """A policy whose memory is one vector beside the frame (a recurrent memory or AEM's
    history)."""
    return hasattr(policy, "predict_action_chunk") and (
        getattr(policy, "memory", None) is not None or getattr(policy, "history", None) is not None)


def donors(labels: np.ndarray, episodes: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """For each row, a random row of another episode with the same label, and a random row with
    a different label."""
    rng = np.random.default_rng(seed)
    same, other = np.empty(len(labels), dtype=int), np.empty(len(labels), dtype=int)
    for index, (label, episode) in enumerate(zip(labels, episodes)):
        alike = np.flatnonzero((labels == label) & (episodes != episode))
        unlike = np.flatnonzero(labels != label)
        if len(alike) == 0 or len(unlike) == 0:
            raise ValueError("the swap test needs rows with at least two labels, each from at "
                             "least two episodes")
        same[index], other[index] = rng.choice(alike), rng.choice(unlike)
    return same, other


def _closer_rate(errors: np.ndarray, than: np.ndarray) -> tuple[float, list[float]]:
    """How often ``errors`` is below ``than`` (ties half), and its 95% Wilson interval."""
    score = float((errors < than).sum() + 0.5 * (errors == than).sum())
    return score / len(errors), list(wilson_interval(score, len(errors)))


@torch.inference_mode()
def swap_test(policy, rows: SwapRows, seed: int = 0, batch: int = 256) -> dict:
    """Predict each row's chunk with its own, a same-label and an other-label memory vector (the
    same noise) and compare each with the expert's actions."""
    labels, episodes = np.array(rows.labels), np.array(rows.episodes)
    same, other = donors(labels, episodes, seed)
    features, state = torch.stack(rows.features), torch.stack(rows.state)
    memory, expert = torch.stack(rows.memory), torch.stack(rows.expert)
    expert = policy.action_normalizer.normalize(expert)
    errors = {"own": [], "same": [], "other": []}
    for start in range(0, len(labels), batch):
        part = slice(start, start + batch)
        for name, vectors in (("own", memory[part]), ("same", memory[same[part]]),
                              ("other", memory[other[part]])):
            generator = torch.Generator().manual_seed(seed + start)  # the same noise for all
            chunk = policy.predict_action_chunk({"features": features[part], "state": state[part],
                                                 "memory_vector": vectors}, generator)
            chunk = policy.action_normalizer.normalize(chunk[:, :expert.shape[1]])
            errors[name].append(((chunk - expert[part]) ** 2).mean((1, 2)))
    own, alike, unlike = (torch.cat(errors[name]).numpy() for name in ("own", "same", "other"))
    use, use_ci = _closer_rate(own, unlike)
    fact, fact_ci = _closer_rate(alike, unlike)
    return {"memory_use_rate": use, "memory_use_ci95": use_ci,
            "fact_use_rate": fact, "fact_use_ci95": fact_ci, "memory_use_rows": len(own),
            "own_memory_error_median": float(np.median(own)),
            "same_fact_memory_error_median": float(np.median(alike)),
            "other_fact_memory_error_median": float(np.median(unlike))}
