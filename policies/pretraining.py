"""AEM pretraining on a demonstration file: ``aem-bench pretrain --demos PATH --out DIR``.

Samples are windows of ``config.window`` consecutive steps inside one episode (frames and the
actions taken), drawn by the same seeded schedule as policy training; the loop, checkpoints and
resume are ``training.optimize``'s. The output directory is a checkpoint that ``aem-dp`` and
``aem-flow`` take their history encoder from, plus ``train_log.jsonl`` with the reconstruction
losses (vision, action) per log interval.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from aem_bench.demos import load_demos
from aem_bench.errors import UsageError
from aem_bench.policies import AEM_PRETRAIN, distributed, load_policy, save_policy
from aem_bench.policies.configuration_aem import AEMConfig
from aem_bench.policies.feature_cache import frozen_features
from aem_bench.policies.modeling_aem import AEMPretrainer
from aem_bench.policies.training import (
    batch_rows,
    encoder_overrides,
    optimize,
    saved_run,
    seed_everything,
    write_recipe,
)


class StepWindows:
    """Every window of ``window`` consecutive steps that fits in an episode; with
    ``from_start``, one window per episode from its step 0, of ``window`` steps or the shortest
    episode's length, whichever is shorter."""

    def __init__(self, demos, window: int, from_start: bool = False):
        self.rgb = np.concatenate([ep.rgb for ep in demos.episodes])
        self.actions = np.concatenate([ep.actions for ep in demos.episodes]).astype(np.float32)
        self.features: np.ndarray | None = None
        if from_start:
            window = min(window, min(len(ep) for ep in demos.episodes))
        starts, offset = [], 0
        for episode in demos.episodes:
            last = offset + (1 if from_start else len(episode) - window + 1)
            starts.extend(range(offset, last))
            offset += len(episode)
        if not starts:
            longest = max(len(ep) for ep in demos.episodes)
            raise UsageError("window", f"no episode is as long as the window ({window} steps; "
                             f"the longest has {longest}): pass a smaller window")
        self.rows = np.asarray(starts)[:, None] + np.arange(window)  # (N, window)

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, samples: np.ndarray) -> dict[str, torch.Tensor]:
        rows = self.rows[samples]
        frames = ({"rgb": torch.from_numpy(self.rgb[rows])} if self.features is None
                  else {"features": torch.from_numpy(self.features[rows])})
        return {**frames, "actions": torch.from_numpy(self.actions[rows])}


def pretrain(
    demos_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    steps: int = 2000,
    seed: int = 0,
    config_overrides: dict | None = None,
    num_threads: int | None = None,
    log_every: int = 10,
    save_every: int = 500,
    resume: bool = False,
    progress: bool = True,
    command: str | None = None,
) -> AEMPretrainer:
    """Pretrain AEM on ``demos_path`` for ``steps`` steps into ``out_dir``; returns the model."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    out_dir = Path(out_dir)
    seed_everything(seed, num_threads)
    demos = load_demos(demos_path)
    first = demos.episodes[0]
    overrides = {**(config_overrides or {}), "image_size": tuple(first.rgb.shape[1:3]),
                 "action_dim": first.actions.shape[1]}

    source = None
    if overrides.get("encoder_checkpoint") is not None:
        overrides, source = encoder_overrides(overrides)
    resume = resume and saved_run(out_dir, "policy_type", AEM_PRETRAIN, overrides)
    model = load_policy(out_dir) if resume else AEMPretrainer(AEMConfig.from_dict(overrides))
    config = model.config
    if source is not None and not resume:
        model.encoder.vision.load_state_dict(source.encoder.state_dict())
        del source

    if distributed.launched_rank() == 0:
        write_recipe(out_dir, demos_path, len(demos.episodes), policy=AEM_PRETRAIN, steps=steps,
                     batch_size=config.batch_size, seed=seed, config_overrides=overrides,
                     command=command)
    windows = StepWindows(demos, config.window, from_start=config.window_start == "episode")
    del demos
    model.encoder.action_normalizer.fit(windows.actions)
    if model.encoder.frozen_vision:
        windows.features = frozen_features(model.encoder.vision, config.crop_size, demos_path,
                                           windows.rgb, progress=progress)
    return optimize(
        model, lambda step: windows.batch(batch_rows(step, len(windows), config.batch_size, seed)),
        steps, out_dir, save_policy, load_policy, seed=seed, resume=resume, log_every=log_every,
        save_every=save_every, desc="pretrain AEM", progress=progress)
