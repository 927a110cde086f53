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
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from diffusers.optimization import get_cosine_schedule_with_warmup
from safetensors.torch import load_file, save_file

from aem_bench.demos import DemoSet, load_demos
from aem_bench.errors import InputError, UsageError, read_json
from aem_bench.policies import (
    CONFIG_NAME,
    POLICIES,
    distributed,
    load_policy,
    make_policy,
    save_policy,
)
from aem_bench.policies.feature_cache import frozen_features
from aem_bench.progress import progress_bar

LOG_NAME = "train_log.jsonl"
STATE_DIR = "training"
RECIPE_NAME = "recipe.json"


def write_recipe(out_dir: Path, demos_path, episodes: int, **fields) -> None:
    """``out_dir/recipe.json``: how this checkpoint was made (the demonstrations by path, digest
    and count, the budget, the seed, the command and the commit), which evaluation copies into
    its results so that a number carries its training."""
    from aem_bench.policies.feature_cache import file_digest
    from aem_bench.provenance import command_line, git_commit

    command = fields.pop("command", None) or command_line()
    recipe = {"demos": str(demos_path), "demos_sha256": file_digest(demos_path),
              "demo_episodes": episodes, **fields, "command": command,
              "git_commit": git_commit()}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RECIPE_NAME).write_text(json.dumps(recipe, indent=2, default=str) + "\n")


class DemoWindows:
    """One sample per demonstration step t: the observations t-To+1 .. t and the actions
    t .. t+Tp-1 of the same episode.

    Windows that run over an episode's edge repeat its first observation or its last action,
    which teaches the policy to hold still once the task is done. All episodes are concatenated
    into flat arrays kept in memory (images stay uint8) and a batch is index rows into them.
    ``features`` (one row per frame) replaces the images for a frozen encoder.
    """

    def __init__(self, demos: DemoSet, obs_horizon: int, pred_horizon: int,
                 state_keys: tuple[str, ...] = ("qpos",), readout: str | None = None):
        self.rgb = np.concatenate([ep.rgb for ep in demos.episodes])
        self.features: np.ndarray | None = None
        self.state = np.concatenate([episode_state(ep, state_keys) for ep in demos.episodes])
        # A memory readout's labels (``PolicyConfig.memory_readout``), one row per step.
        self.readout_targets = (None if readout is None else np.concatenate(
            [readout_labels(ep, readout) for ep in demos.episodes]))
        self.actions = np.concatenate([ep.actions for ep in demos.episodes]).astype(np.float32)
        obs_index, action_index, episode_start, start = [], [], [], 0
        for episode in demos.episodes:
            steps = np.arange(len(episode))[:, None]
            last = len(episode) - 1
            obs_index.append(start + np.clip(steps + np.arange(1 - obs_horizon, 1), 0, last))
            action_index.append(start + np.clip(steps + np.arange(pred_horizon), 0, last))
            episode_start.append(np.full(len(episode), start))
            start += len(episode)
        self.obs_index = np.concatenate(obs_index)  # (N, obs_horizon) rows into rgb / state
        self.action_index = np.concatenate(action_index)  # (N, pred_horizon) rows into actions
        self.episode_start = np.concatenate(episode_start)  # (N,) first row of each's episode
        self.history_vectors: np.ndarray | None = None  # (N, M) of a frozen history encoder
        self.history_window: int | None = None  # or: windows, for a history encoder in training

    def window_rows(self, rows: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``window`` steps ending at each of ``rows``: (B, window) rows (clipped to the
        episode) and (B, window) valid flags (False before the episode began)."""
        steps = rows[:, None] + np.arange(1 - window, 1)
        starts = self.episode_start[rows][:, None]
        return np.maximum(steps, starts), steps >= starts

    def __len__(self) -> int:
        return len(self.obs_index)

    def batch(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        """The samples ``rows`` stacked: rgb (B, To, H, W, 3) or features (B, To, F), state
        (B, To, D), actions (B, Tp, A); for AEM, the history vectors (B, M) or each row's window
        of steps."""
        obs, act = self.obs_index[rows], self.action_index[rows]
        images = ({"rgb": torch.from_numpy(self.rgb[obs])} if self.features is None
                  else {"features": torch.from_numpy(self.features[obs])})
        batch = {**images, "state": torch.from_numpy(self.state[obs]),
                 "actions": torch.from_numpy(self.actions[act])}
        if self.readout_targets is not None:
            batch["readout_target"] = torch.from_numpy(self.readout_targets[rows])
        if self.history_vectors is not None:
            batch["memory_vector"] = torch.from_numpy(self.history_vectors[rows])
        elif self.history_window is not None:
            window, valid = self.window_rows(rows, self.history_window)
            batch["window_features"] = torch.from_numpy(self.features[window])
            batch["window_actions"] = torch.from_numpy(self.actions[window])
            batch["window_valid"] = torch.from_numpy(valid)
        return batch


class EpisodeBatches:
    """Training batches of whole episodes, for a policy with a recurrent memory (or with AEM's
    history encoder trained through whole episodes).

    Step s takes ``episodes`` episodes (seeded permutations of the episodes, cut into groups, as
    :func:`batch_rows` does with steps), pads them to the longest, and draws ``steps`` of their
    (episode, step) pairs uniformly, each with its action chunk. The memory runs over the whole
    padded episodes from step 0; only the drawn steps enter the loss. Padding comes after an
    episode's last step, so it never reaches a drawn step through the recurrence.
    """

    def __init__(self, windows: DemoWindows, episodes: int, steps: int, seed: int):
        if windows.features is None:
            raise ValueError("a recurrent memory is trained on a frozen encoder's features")
        self.windows, self.episodes, self.steps, self.seed = windows, episodes, steps, seed
        self.starts = np.unique(windows.episode_start)
        self.lengths = np.diff(np.append(self.starts, len(windows)))

    def __call__(self, step: int) -> dict[str, torch.Tensor]:
        w = self.windows
        chosen = self.starts[batch_rows(step, len(self.starts), self.episodes, self.seed)]
        lengths = self.lengths[np.searchsorted(self.starts, chosen)]
        longest = int(lengths.max())
        index = np.minimum(chosen[:, None] + np.arange(longest), chosen[:, None]
                           + lengths[:, None] - 1)  # (E, T) rows, the last step repeated
        previous = np.concatenate([index[:, :1], index[:, :-1]], axis=1)
        rng = np.random.default_rng([self.seed, step])
        flat = rng.choice(int(lengths.sum()), size=self.steps, replace=True)
        episode = np.searchsorted(np.cumsum(lengths), flat, side="right")
        at = flat - np.concatenate([[0], np.cumsum(lengths)[:-1]])[episode]
        batch = {"features": torch.from_numpy(w.features[index]),
                 "state": torch.from_numpy(w.state[index]),
                 "previous_actions": torch.from_numpy(w.actions[previous]),
                 "taken_actions": torch.from_numpy(w.actions[index]),
                 "rows": torch.from_numpy(np.stack([episode, at], 1)),
                 "actions": torch.from_numpy(w.actions[w.action_index[index[episode, at]]])}
        if w.readout_targets is not None:
            batch["readout_target"] = torch.from_numpy(w.readout_targets[index[episode, at]])
        return batch


@torch.inference_mode()
def precompute_history_vectors(history, dataset: DemoWindows,
                               batch_size: int = 256) -> np.ndarray:
    """(N, M) history vectors of a frozen AEM history encoder at every step of the dataset, as
    the policy computes them at run time: over the whole episode so far (recurrent) or over a
    window."""
    history.eval()
    window = history.config.inference_window
    features = torch.from_numpy(dataset.features)
    actions = torch.from_numpy(dataset.actions)
    out = np.zeros((len(dataset), history.config.d_model), dtype=np.float32)
    if window is None:  # one pass per episode gives every step's vector
        starts = np.unique(dataset.episode_start)
        ends = np.append(starts[1:], len(dataset))
        for start, end in zip(starts, ends):
            out[start:end] = history.history(features[start:end][None],
                                             actions[start:end][None])[0].numpy()
        return out
    for first in range(0, len(dataset), batch_size):
        rows = np.arange(first, min(first + batch_size, len(dataset)))
        window_rows, valid = dataset.window_rows(rows, window)
        out[rows] = history.window_history(features[window_rows], actions[window_rows],
                                           torch.from_numpy(valid)).numpy()
    return out


def aem_overrides(overrides: dict):
    """For a policy with AEM's history encoder: the overrides completed from the pretraining run
    named by ``aem_checkpoint`` (its encoder, crop and AEMConfig), and that run's model."""
    from aem_bench.policies.modeling_aem import AEMPretrainer

    path = overrides.get("aem_checkpoint")
    if path is None:
        if overrides.get("pretrained_history", True):
            raise UsageError("aem_checkpoint", "an AEM policy needs the pretraining run it builds "
                             "on: --config '{\"aem_checkpoint\": \"DIR\"}' (DIR from `aem-bench "
                             "pretrain`)")
        return overrides, None
    aem = load_policy(path)
    if not isinstance(aem, AEMPretrainer):
        raise UsageError("aem_checkpoint", f"{path} is a checkpoint of "
                         f"'{aem.config.policy_type}', not of AEM pretraining")
    config = aem.config
    if tuple(config.image_size) != tuple(overrides["image_size"]):
        raise UsageError("aem_checkpoint", f"{path} was pretrained on "
                         f"{tuple(config.image_size)} images, the demonstrations have "
                         f"{tuple(overrides['image_size'])}")
    history = {**config.to_dict(), **(overrides.get("history") or {})}
    return {**overrides, "aem_checkpoint": str(path), "encoder": config.encoder,
            "encoder_options": config.encoder_options, "crop_size": config.crop_size,
            "freeze_encoder": True, "history": history}, aem


def encoder_overrides(overrides: dict) -> tuple[dict, torch.nn.Module]:
    """For a policy that takes a trained policy's frame encoder (``encoder_checkpoint``): the
    overrides completed with that encoder, its crop and frozen, and the trained policy."""
    path = overrides["encoder_checkpoint"]
    source = load_policy(path)
    if not hasattr(source, "encoder") or not hasattr(source.config, "crop_size"):
        raise UsageError("encoder_checkpoint", f"{path} is not a trained policy")
    config = source.config
    if tuple(config.image_size) != tuple(overrides["image_size"]):
        raise UsageError("encoder_checkpoint", f"{path} was trained on "
                         f"{tuple(config.image_size)} images, the demonstrations have "
                         f"{tuple(overrides['image_size'])}")
    return {**overrides, "encoder_checkpoint": str(path), "encoder": config.encoder,
            "encoder_options": config.encoder_options, "crop_size": config.crop_size,
            "freeze_encoder": True}, source


def checkpoint_training(checkpoint: str | os.PathLike, config, memory: str | None) -> dict:
    """What a results file says of its policy's training: the checkpoint's recipe (None for a
    checkpoint made before recipes were written), its memory, and the checkpoints it builds on."""
    path = Path(checkpoint) / RECIPE_NAME
    recipe = None
    if path.is_file():
        recover = ("it records how the checkpoint was trained: restore it, or move it away "
                   "(the results then record no training)")
        recipe = read_json(path, recover)
        if not isinstance(recipe, dict):
            raise InputError(f"{path}: damaged (not a JSON object); {recover}")
    return {"checkpoint": str(checkpoint), "policy_type": config.policy_type,
            "memory": memory,
            "encoder_checkpoint": config.encoder_checkpoint,
            "aem_checkpoint": config.aem_checkpoint, "recipe": recipe}


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
            raise UsageError("state_keys", f"the demonstrations have no '{key}'; record them with "
                             f"`aem-bench demos --obs-mode rgb+oracle` on a memory task (at "
                             f"this version of aem-bench, for 'fact')")
        parts.append(part)
    return np.concatenate(parts, axis=1).astype(np.float32)


def readout_labels(episode, readout: str) -> np.ndarray:
    """The (T, K) labels a memory readout learns to estimate: the episode's recorded ``readout``
    ("oracle" or "fact"), which must lie in [0, 1] (one-hot codes) for its cross-entropy."""
    labels = episode_state(episode, (readout,))
    if labels.min() < 0 or labels.max() > 1:
        raise UsageError("memory_readout", f"the demonstrations' '{readout}' takes values in "
                         f"[{labels.min():g}, {labels.max():g}]; a readout is trained with "
                         f"binary cross-entropy on labels in [0, 1]")
    return labels


def _data_shapes(demos: DemoSet, state_keys: tuple[str, ...], readout: str | None) -> dict:
    first = demos.episodes[0]
    shapes = {
        "image_size": tuple(first.rgb.shape[1:3]),
        "state_dim": episode_state(first, state_keys).shape[1],
        "action_dim": first.actions.shape[1],
    }
    if readout is not None:
        shapes["readout_dim"] = episode_state(first, (readout,)).shape[1]
    return shapes


def saved_run(out_dir: Path, type_key: str, type_value: str, overrides: dict) -> bool:
    """Whether ``out_dir`` holds a run to resume, asked when a resume is requested: says so on
    stderr when there is none. Raises if it is a run of something else (``config.json``'s
    ``type_key`` is not ``type_value``) or was started with other settings."""
    if not (out_dir / STATE_DIR / "state.pt").is_file():
        # A resume of a run killed before its first save is legitimate, so not an error; but the
        # user asked to continue something and must see that nothing was continued.
        print(f"no saved run in {out_dir}: starting afresh", file=sys.stderr)
        return False
    recover = f"move {out_dir} away to train afresh"
    saved = read_json(out_dir / CONFIG_NAME, recover)
    if not isinstance(saved, dict):
        raise InputError(f"{out_dir / CONFIG_NAME}: damaged (not a JSON object); {recover}")
    if saved.get(type_key) != type_value:
        raise UsageError("resume", f"{out_dir} holds a run of '{saved.get(type_key)}', not "
                         f"'{type_value}'")
    conflicts = {key: (value, saved.get(key)) for key, value in overrides.items()
                 if json.loads(json.dumps(value)) != saved.get(key)}
    if conflicts:
        raise UsageError("resume", f"{out_dir} was started with other settings (given, "
                         f"saved): {conflicts}")
    return True


def _read_state(path: Path, out_dir: Path, read: Callable[[Path], object]):
    """A saved training state (``state.pt``, ``raw.safetensors``) read by ``read``, or an
    :class:`InputError` naming it when it is damaged (cut short, garbage)."""
    try:
        return read(path)
    except Exception as err:  # noqa: BLE001 -- torch and safetensors raise many kinds
        message = (str(err).strip().splitlines() or [""])[0]
        raise InputError(f"{path}: damaged, the saved run cannot be resumed ({type(err).__name__}"
                         f": {message}); move {out_dir} away to train afresh") from None


def read_train_log(path: Path) -> list[tuple[str, dict]]:
    """The lines of a training log with their entries. A last line cut short by a kill is left
    out (that step is trained again); any other line that is not an entry with a step is an
    :class:`InputError` naming it."""
    lines = path.read_text().splitlines()
    entries = []
    for number, line in enumerate(lines, start=1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break
            entry = None
        if not isinstance(entry, dict) or not isinstance(entry.get("step"), int):
            raise InputError(f"{path}:{number}: not a training log entry; the log is damaged "
                             f"(move {path.parent} away to train afresh)")
        entries.append((line, entry))
    return entries


def optimize(
    model: torch.nn.Module,
    batch_at: Callable[[int], dict],
    steps: int,
    out_dir: Path,
    save_model: Callable[[torch.nn.Module, Path], object],
    load_model: Callable[[Path], torch.nn.Module],
    seed: int = 0,
    resume: bool = False,
    log_every: int = 10,
    save_every: int = 500,
    desc: str = "train",
    progress: bool = True,
) -> torch.nn.Module:
    """The optimisation loop shared by policy training and AEM pretraining.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the processes train one model with
    DistributedDataParallel, each on its share of the same global batch (``distributed.py``);
    only rank 0 writes the checkpoint and the log.

    ``model.compute_loss(batch, generator)`` returns the loss, or a dict of losses with the total
    under "loss" (each part is logged). ``model.config`` gives lr, betas (optional),
    weight_decay, lr_warmup_steps, grad_clip_norm and ema_decay (optional). ``batch_at(step)`` is
    the batch of a step (from 1). Checkpoints go through ``save_model(model, out_dir)``; with
    ``resume``, the run saved in ``out_dir`` carries on (``model`` must be ``load_model(out_dir)``).
    """
    with distributed.process_group():
        return _optimize(model, batch_at, steps, out_dir, save_model, load_model, seed, resume,
                         log_every, save_every, desc, progress)


def _optimize(model, batch_at, steps, out_dir, save_model, load_model, seed, resume, log_every,
              save_every, desc, progress) -> torch.nn.Module:
    config = model.config
    generator = torch.Generator().manual_seed(seed + 1)  # crops, masks, noise
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay,
                                  betas=getattr(config, "betas", (0.9, 0.999)))
    # Warmup is capped at a tenth of the run so that short runs still reach the full rate.
    lr_schedule = get_cosine_schedule_with_warmup(
        optimizer, min(config.lr_warmup_steps, steps // 10), steps
    )
    ema_decay = getattr(config, "ema_decay", None)
    first = 1
    if resume:
        raw = out_dir / STATE_DIR / "raw.safetensors"
        if raw.is_file():
            model.load_state_dict(_read_state(raw, out_dir, load_file))
    ema = EMA(model, ema_decay) if ema_decay is not None else None
    if resume:
        state = _read_state(out_dir / STATE_DIR / "state.pt", out_dir,
                            lambda path: torch.load(path, weights_only=True))
        optimizer.load_state_dict(state["optimizer"])
        lr_schedule.load_state_dict(state["lr_schedule"])
        generator.set_state(state["generator"])
        if ema is not None:
            ema.model.load_state_dict(load_model(out_dir).state_dict())
            ema.updates = state["ema_updates"]
        first = state["step"] + 1

    def checkpoint(step: int) -> None:
        save_model(ema.model if ema is not None else model, out_dir)
        state_dir = out_dir / STATE_DIR
        state_dir.mkdir(exist_ok=True)
        if ema is not None:
            raw = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
            save_file(raw, state_dir / "raw.safetensors")
        state = {"step": step, "optimizer": optimizer.state_dict(),
                 "lr_schedule": lr_schedule.state_dict(),
                 "ema_updates": ema.updates if ema else 0, "generator": generator.get_state()}
        partial = state_dir / "state.pt.tmp"
        torch.save(state, partial)
        partial.replace(state_dir / "state.pt")  # last: a state file means the rest is written

    main = distributed.is_main()  # the process that writes: rank 0, or the only one
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        log_lines = []
        if resume and (out_dir / LOG_NAME).is_file():  # keep the log up to the resume
            log_lines = [line for line, entry in read_train_log(out_dir / LOG_NAME)
                         if entry["step"] < first]
        (out_dir / LOG_NAME).write_text("".join(line + "\n" for line in log_lines))

    model.train()
    parallel = None
    if distributed.is_distributed():
        # Unused parameters keep a None gradient as in one process, so AdamW skips them alike.
        parallel = torch.nn.parallel.DistributedDataParallel(
            distributed.LossModule(model), find_unused_parameters=True)
    start, parts = time.perf_counter(), {}
    with (
        open(out_dir / LOG_NAME, "a") if main else nullcontext() as log,
        progress_bar(total=steps, initial=first - 1, desc=desc,
                     disable=not progress or not main) as bar,
    ):
        for step in range(first, steps + 1):
            if parallel is None:
                losses = model.compute_loss(batch_at(step), generator=generator)
            else:
                with distributed.ShardedRandomness(generator):
                    losses = parallel(distributed.rank_rows(batch_at(step)), generator)
            if not isinstance(losses, dict):
                losses = {"loss": losses}
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            if config.grad_clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip_norm)
            optimizer.step()
            lr_schedule.step()
            if ema is not None:
                ema.update()

            values = distributed.mean_over_ranks([value.item() for value in losses.values()])
            for name, value in zip(losses, values):
                parts.setdefault(name, []).append(value)
            bar.update()
            if not main:
                parts.clear()
            elif step % log_every == 0 or step == steps:
                record = {"step": step, **{k: float(np.mean(v)) for k, v in parts.items()},
                          "lr": lr_schedule.get_last_lr()[0],
                          "seconds": round(time.perf_counter() - start, 3)}
                log.write(json.dumps(record) + "\n")
                log.flush()
                bar.set_postfix(loss=f"{record['loss']:.4f}", refresh=False)
                parts.clear()
            if main and (step % save_every == 0 or step == steps):
                checkpoint(step)

    trained = ema.model if ema is not None else model
    if main and first > steps:  # nothing left to train: the saved run is the result
        save_model(trained, out_dir)
    if distributed.is_distributed():
        torch.distributed.barrier()  # every rank returns once the checkpoint is on disk
    trained.eval()
    return trained


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
    command: str | None = None,
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
    seed_everything(seed, num_threads)

    demos = load_demos(demos_path)
    overrides = dict(config_overrides or {})
    if batch_size is not None:
        overrides["batch_size"] = batch_size
    state_keys = tuple(overrides.get("state_keys", ("qpos",)))
    for key, value in _data_shapes(demos, state_keys, overrides.get("memory_readout")).items():
        if key in overrides and not np.array_equal(overrides[key], value):
            raise UsageError(key, f"the config says {overrides[key]} but {demos_path} has "
                             f"{value}")
        overrides[key] = value

    aem = encoder_source = None
    if "history" in POLICIES.get(policy_name, {}) or overrides.get("history") is not None:
        overrides, aem = aem_overrides(overrides)
    elif overrides.get("encoder_checkpoint") is not None:
        overrides, encoder_source = encoder_overrides(overrides)
    resume = resume and saved_run(out_dir, "policy_type", policy_name, overrides)
    policy = load_policy(out_dir) if resume else make_policy(policy_name, **overrides)
    config = policy.config
    if aem is not None and not resume:  # start from the pretrained encoders (frame and history)
        policy.encoder.load_state_dict(aem.encoder.vision.state_dict())
        if config.pretrained_history:
            policy.history.load_state_dict({k: v for k, v in aem.encoder.state_dict().items()
                                            if not k.startswith("vision.")})

    if encoder_source is not None and not resume:
        policy.encoder.load_state_dict(encoder_source.encoder.state_dict())
        del encoder_source

    if distributed.launched_rank() == 0:
        write_recipe(out_dir, demos_path, len(demos.episodes), policy=policy_name, steps=steps,
                     batch_size=config.batch_size, seed=seed, config_overrides=overrides,
                     command=command)
    dataset = DemoWindows(demos, config.obs_horizon, config.pred_horizon, config.state_keys,
                          config.memory_readout)
    del demos  # the dataset holds its own concatenated copy
    if policy.frozen_encoder:
        dataset.features = frozen_features(policy.encoder, config.crop_size, demos_path,
                                           dataset.rgb,
                                           progress=progress and distributed.launched_rank() == 0)
    policy.fit_normalization(dataset.state, dataset.actions)
    if policy.history is not None:
        if not config.pretrained_history:
            policy.history.action_normalizer.fit(dataset.actions)
        if config.history_frozen:
            dataset.history_vectors = precompute_history_vectors(policy.history, dataset)
        else:
            dataset.history_window = policy.history.config.inference_window

    if policy.memory is not None or policy.trains_history_through_episodes:
        batch_at = EpisodeBatches(dataset, config.episodes_per_batch, config.batch_size, seed)
    else:
        def batch_at(step):
            return dataset.batch(batch_rows(step, len(dataset), config.batch_size, seed))
    trained = optimize(
        policy, batch_at,
        steps, out_dir, save_policy, load_policy, seed=seed, resume=resume,
        log_every=log_every, save_every=save_every, desc=f"train {policy_name}", progress=progress)
    trained.reset()
    return trained


def seed_everything(seed: int, num_threads: int | None) -> None:
    """Seed python, numpy and torch, and set torch's threads (default: every CPU allowed, shared
    out among the torchrun processes of this machine)."""
    cpus = len(os.sched_getaffinity(0))
    torch.set_num_threads(num_threads or max(1, cpus // distributed.local_world_size()))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
