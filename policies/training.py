"""Behaviour cloning of a zoo policy on a demonstration file, on the CPU, resumable.

``train()`` builds the policy, fits its normalisation stats on the demonstrations, optimises
``policy.compute_loss`` with AdamW and a warmup + cosine learning rate, keeps an EMA of the weights
if the config asks for one, and writes a checkpoint directory::

    out_dir/config.json            what load_policy() needs to rebuild the model
    out_dir/model.safetensors      the (EMA) weights and normalisation stats
    out_dir/train_log.jsonl        one line per log interval: step, loss, lr, seconds
    out_dir/training/              what resuming needs: the raw weights (when there is an EMA),
                                   the optimizer, the schedule, the random state and the step

Every ``save_every`` steps and at the end the checkpoint is rewritten; ``resume=True`` carries on
from it. A run is deterministic given its seed, and a resumed run gives the same weights as one
that was never interrupted: step s trains on the batch that a permutation seeded by (seed, epoch)
puts there, and the generator of crops and noise is saved with the rest.

A frozen encoder's features are computed once per dataset (``feature_cache.py``), so its steps
cost only the head's.
"""

from __future__ import annotations

import copy
import json
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from diffusers.optimization import get_cosine_schedule_with_warmup
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from aem_bench.demos import DemoSet, load_demos
from aem_bench.policies import CONFIG_NAME, load_policy, make_policy, save_policy
from aem_bench.policies.feature_cache import frozen_features

LOG_NAME = "train_log.jsonl"
STATE_DIR = "training"


class DemoWindows:
    """One sample per demonstration step t: the observations t-To+1 .. t and the actions
    t .. t+Tp-1 of the same episode.

    Windows that run over an episode's edge repeat its first observation or its last action,
    which teaches the policy to hold still once the task is done. All episodes are concatenated
    into flat arrays kept in memory (images stay uint8) and a batch is index rows into them.
    ``features`` (one row per frame) replaces the images for a frozen encoder.
    """

    def __init__(self, demos: DemoSet, obs_horizon: int, pred_horizon: int,
                 state_keys: tuple[str, ...] = ("qpos",)):
        self.rgb = np.concatenate([ep.rgb for ep in demos.episodes])
        self.features: np.ndarray | None = None
        self.state = np.concatenate([episode_state(ep, state_keys) for ep in demos.episodes])
        self.actions = np.concatenate([ep.actions for ep in demos.episodes]).astype(np.float32)
        obs_index, action_index, start = [], [], 0
        for episode in demos.episodes:
            steps = np.arange(len(episode))[:, None]
            last = len(episode) - 1
            obs_index.append(start + np.clip(steps + np.arange(1 - obs_horizon, 1), 0, last))
            action_index.append(start + np.clip(steps + np.arange(pred_horizon), 0, last))
            start += len(episode)
        self.obs_index = np.concatenate(obs_index)  # (N, obs_horizon) rows into rgb / state
        self.action_index = np.concatenate(action_index)  # (N, pred_horizon) rows into actions

    def __len__(self) -> int:
        return len(self.obs_index)

    def batch(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        """The samples ``rows`` stacked: rgb (B, To, H, W, 3) or features (B, To, F), state
        (B, To, D), actions (B, Tp, A)."""
        obs, act = self.obs_index[rows], self.action_index[rows]
        images = ({"rgb": torch.from_numpy(self.rgb[obs])} if self.features is None
                  else {"features": torch.from_numpy(self.features[obs])})
        return {**images, "state": torch.from_numpy(self.state[obs]),
                "actions": torch.from_numpy(self.actions[act])}


def batch_rows(step: int, samples: int, batch_size: int, seed: int) -> np.ndarray:
    """The rows of training step ``step`` (from 1): epochs are seeded permutations cut into
    equal batches (the remainder is dropped unless the data is smaller than one batch)."""
    per_epoch = max(1, samples // batch_size)
    epoch, index = divmod(step - 1, per_epoch)
    order = torch.randperm(samples, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return order[index * batch_size : (index + 1) * batch_size].numpy()


class EMA:
    """Exponential moving average of a model's trainable parameters (the rest never change).

    The decay ramps up as (1 + n) / (10 + n) so the average is not dominated by the random init.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.model = copy.deepcopy(model)
        self.model.requires_grad_(False)
        self.decay = decay
        self.updates = 0
        self._pairs = [(average, current) for average, current
                       in zip(self.model.parameters(), model.parameters()) if current.requires_grad]

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for average, current in self._pairs:
            average.lerp_(current, 1.0 - decay)


def episode_state(episode, state_keys: tuple[str, ...]) -> np.ndarray:
    """The (T, state_dim) low-dimensional input of one episode: its ``state_keys`` side by side."""
    parts = []
    for key in state_keys:
        part = getattr(episode, key, None)
        if part is None:
            raise ValueError(f"the demonstrations have no '{key}'; record them with "
                             f"`aem-bench demos --obs-mode rgb+oracle` on a memory task")
        parts.append(part)
    return np.concatenate(parts, axis=1).astype(np.float32)


def _data_shapes(demos: DemoSet, state_keys: tuple[str, ...]) -> dict:
    first = demos.episodes[0]
    return {
        "image_size": tuple(first.rgb.shape[1:3]),
        "state_dim": episode_state(first, state_keys).shape[1],
        "action_dim": first.actions.shape[1],
    }


def _save(out_dir: Path, policy, ema: EMA | None, optimizer, lr_schedule, step: int,
          sample_generator: torch.Generator) -> None:
    save_policy(ema.model if ema is not None else policy, out_dir)
    state_dir = out_dir / STATE_DIR
    state_dir.mkdir(exist_ok=True)
    if ema is not None:
        raw = {k: v.detach().contiguous() for k, v in policy.state_dict().items()}
        save_file(raw, state_dir / "raw.safetensors")
    state = {"step": step, "optimizer": optimizer.state_dict(),
             "lr_schedule": lr_schedule.state_dict(), "ema_updates": ema.updates if ema else 0,
             "sample_generator": sample_generator.get_state()}
    partial = state_dir / "state.pt.tmp"
    torch.save(state, partial)
    partial.replace(state_dir / "state.pt")  # last: a state file means the rest is written


def _resume(out_dir: Path, policy_name: str, overrides: dict) -> tuple[torch.nn.Module, dict]:
    """The policy of an interrupted run in ``out_dir``, with its raw weights, and its state."""
    saved = json.loads((out_dir / CONFIG_NAME).read_text())
    if saved.get("policy_type") != policy_name:
        raise ValueError(f"{out_dir} holds a run of '{saved.get('policy_type')}', "
                         f"not '{policy_name}'")
    conflicts = {key: (value, saved.get(key)) for key, value in overrides.items()
                 if json.loads(json.dumps(value)) != saved.get(key)}
    if conflicts:
        raise ValueError(f"resuming {out_dir} with other settings than it was started with "
                         f"(given, saved): {conflicts}")
    policy = load_policy(out_dir)
    raw = out_dir / STATE_DIR / "raw.safetensors"
    if raw.is_file():
        policy.load_state_dict(load_file(raw))
    state = torch.load(out_dir / STATE_DIR / "state.pt", weights_only=True)
    return policy, state


def train(
    policy_name: str,
    demos_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    steps: int,
    batch_size: int | None = None,
    seed: int = 0,
    config_overrides: dict | None = None,
    num_threads: int | None = None,
    log_every: int = 10,
    save_every: int = 500,
    resume: bool = False,
    progress: bool = True,
) -> torch.nn.Module:
    """Train ``policy_name`` on ``demos_path`` for ``steps`` steps and save it to ``out_dir``.

    ``batch_size`` (default: the config's) and ``config_overrides`` end up in the saved config.
    Image size and state/action dims are taken from the demonstrations. ``resume=True`` continues
    the run saved in ``out_dir`` (if there is one) up to ``steps``. Sets torch to ``num_threads``
    threads (default: all CPUs this process may use). Returns the saved policy (the EMA weights if
    the config has ``ema_decay``) in eval mode.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    out_dir = Path(out_dir)
    torch.set_num_threads(num_threads or len(os.sched_getaffinity(0)))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

    demos = load_demos(demos_path)
    overrides = dict(config_overrides or {})
    if batch_size is not None:
        overrides["batch_size"] = batch_size
    state_keys = tuple(overrides.get("state_keys", ("qpos",)))
    for key, value in _data_shapes(demos, state_keys).items():
        if key in overrides and not np.array_equal(overrides[key], value):
            raise ValueError(f"config override {key}={overrides[key]} but {demos_path} has {value}")
        overrides[key] = value

    resumed = None
    if resume and (out_dir / STATE_DIR / "state.pt").is_file():
        policy, resumed = _resume(out_dir, policy_name, overrides)
        policy.train()
    else:
        policy = make_policy(policy_name, **overrides)
    config = policy.config

    dataset = DemoWindows(demos, config.obs_horizon, config.pred_horizon, config.state_keys)
    del demos  # the dataset holds its own concatenated copy
    if policy.frozen_encoder:
        dataset.features = frozen_features(policy, demos_path, dataset.rgb, progress=progress)
    policy.fit_normalization(dataset.state, dataset.actions)
    sample_generator = torch.Generator().manual_seed(seed + 1)  # crops, noise, diffusion steps

    trainable = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
    )
    # Warmup is capped at a tenth of the run so that short runs still reach the full rate.
    lr_schedule = get_cosine_schedule_with_warmup(
        optimizer, min(config.lr_warmup_steps, steps // 10), steps
    )
    ema = EMA(policy, config.ema_decay) if config.ema_decay is not None else None
    first = 1
    if resumed is not None:
        optimizer.load_state_dict(resumed["optimizer"])
        lr_schedule.load_state_dict(resumed["lr_schedule"])
        sample_generator.set_state(resumed["sample_generator"])
        if ema is not None:
            ema.model.load_state_dict(load_policy(out_dir).state_dict())
            ema.updates = resumed["ema_updates"]
        first = resumed["step"] + 1

    out_dir.mkdir(parents=True, exist_ok=True)
    log_lines = []
    if resumed is not None and (out_dir / LOG_NAME).is_file():  # keep the log up to the resume
        log_lines = [line for line in (out_dir / LOG_NAME).read_text().splitlines()
                     if json.loads(line)["step"] < first]
    (out_dir / LOG_NAME).write_text("".join(line + "\n" for line in log_lines))

    policy.train()
    start, losses = time.perf_counter(), []
    with (
        open(out_dir / LOG_NAME, "a") as log,
        tqdm(total=steps, initial=first - 1, desc=f"train {policy_name}",
             disable=not progress) as bar,
    ):
        for step in range(first, steps + 1):
            batch = dataset.batch(batch_rows(step, len(dataset), config.batch_size, seed))
            loss = policy.compute_loss(batch, generator=sample_generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip_norm)
            optimizer.step()
            lr_schedule.step()
            if ema is not None:
                ema.update()

            losses.append(loss.item())
            bar.update()
            if step % log_every == 0 or step == steps:
                record = {
                    "step": step,
                    "loss": float(np.mean(losses)),
                    "lr": lr_schedule.get_last_lr()[0],
                    "seconds": round(time.perf_counter() - start, 3),
                }
                log.write(json.dumps(record) + "\n")
                log.flush()
                bar.set_postfix(loss=f"{record['loss']:.4f}")
                losses.clear()
            if step % save_every == 0 or step == steps:
                _save(out_dir, policy, ema, optimizer, lr_schedule, step, sample_generator)

    trained = ema.model if ema is not None else policy
    if first > steps:  # nothing left to train: the saved run is the result
        save_policy(trained, out_dir)
    trained.eval()
    trained.reset()
    return trained
