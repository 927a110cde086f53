"""Behaviour cloning of a registered policy on a demonstration file, on the CPU.

``train()`` builds the policy, fits its normalisation stats on the demonstrations, optimises
``policy.compute_loss`` with AdamW and a warmup + cosine learning rate, keeps an EMA of the weights
if the config asks for one, and writes a checkpoint directory::

    out_dir/config.json         what load_policy() needs to rebuild the model
    out_dir/model.safetensors   the (EMA) weights and normalisation stats
    out_dir/train_log.jsonl     one line per log interval: step, loss, lr, seconds

A run is deterministic given its seed: weights are initialised after seeding, the DataLoader
shuffles with its own generator, and crops, noise and diffusion steps come from another.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from diffusers.optimization import get_cosine_schedule_with_warmup
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from aem_bench.demos import DemoSet, load_demos
from aem_bench.policies import make_policy, save_policy

LOG_NAME = "train_log.jsonl"


class DemoWindows(Dataset):
    """One sample per demonstration step t: the observations t-To+1 .. t and the actions
    t .. t+Tp-1 of the same episode.

    Windows that run over an episode's edge repeat its first observation or its last action,
    which teaches the policy to hold still once the task is done. All episodes are concatenated
    into flat arrays kept in memory (images stay uint8) and each sample is two index rows into them.
    """

    def __init__(self, demos: DemoSet, obs_horizon: int, pred_horizon: int,
                 state_keys: tuple[str, ...] = ("qpos",)):
        self.rgb = np.concatenate([ep.rgb for ep in demos.episodes])
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

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        obs, act = self.obs_index[i], self.action_index[i]
        return {
            "rgb": torch.from_numpy(self.rgb[obs]),
            "state": torch.from_numpy(self.state[obs]),
            "actions": torch.from_numpy(self.actions[act]),
        }


class EMA:
    """Exponential moving average of a model's parameters (buffers are copied once, at the start).

    The decay ramps up as (1 + n) / (10 + n) so the average is not dominated by the random init.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.model = type(model)(model.config)
        self.model.load_state_dict(model.state_dict())
        self.model.requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for average, current in zip(self.model.parameters(), model.parameters()):
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


def _batches(loader: DataLoader):
    """Endless iteration over the loader; every pass reshuffles with the loader's generator."""
    while True:
        yield from loader


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
    progress: bool = True,
) -> torch.nn.Module:
    """Train ``policy_name`` on ``demos_path`` for ``steps`` steps and save it to ``out_dir``.

    ``batch_size`` (default: the config's) and ``config_overrides`` end up in the saved config.
    Image size and state/action dims are taken from the demonstrations. Sets torch to
    ``num_threads`` threads (default: all CPUs this process may use). Returns the saved policy
    (the EMA weights if the config has ``ema_decay``) in eval mode.
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
    policy = make_policy(policy_name, **overrides)
    config = policy.config

    dataset = DemoWindows(demos, config.obs_horizon, config.pred_horizon, config.state_keys)
    del demos  # the dataset holds its own concatenated copy
    policy.fit_normalization(dataset.state, dataset.actions)
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=len(dataset) >= config.batch_size,  # equal-sized batches unless data is tiny
        num_workers=0,  # everything is in memory already; workers would only copy it
        generator=torch.Generator().manual_seed(seed),
    )
    sample_generator = torch.Generator().manual_seed(seed + 1)  # crops, noise, diffusion steps

    optimizer = torch.optim.AdamW(
        policy.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
    )
    # Warmup is capped at a tenth of the run so that short runs still reach the full rate.
    lr_schedule = get_cosine_schedule_with_warmup(
        optimizer, min(config.lr_warmup_steps, steps // 10), steps
    )
    ema = EMA(policy, config.ema_decay) if config.ema_decay is not None else None

    out_dir.mkdir(parents=True, exist_ok=True)
    policy.train()
    start, losses = time.perf_counter(), []
    with (
        open(out_dir / LOG_NAME, "w") as log,
        tqdm(total=steps, desc=f"train {policy_name}", disable=not progress) as bar,
    ):
        for step, batch in enumerate(_batches(loader), start=1):
            loss = policy.compute_loss(batch, generator=sample_generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(policy.parameters(), config.grad_clip_norm)
            optimizer.step()
            lr_schedule.step()
            if ema is not None:
                ema.update(policy)

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
            if step == steps:
                break

    trained = ema.model if ema is not None else policy
    save_policy(trained, out_dir)
    trained.eval()
    trained.reset()
    return trained
