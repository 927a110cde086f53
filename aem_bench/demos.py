"""Demonstration files: one HDF5 file per task, one group per episode.

Layout (``FORMAT_VERSION`` 1)::

    /                      attrs: format_version, env_id, env_kwargs (JSON), versions (JSON)
    /episode_00000         attrs: seed (int), success (bool)
        rgb      (T, H, W, 3) uint8    head camera before each action
        qpos     (T, D)       float32  joint positions before each action
        actions  (T, A)       float32  action taken at that step
        oracle   (T, K)       float32  optional: memory tasks recorded with obs_mode="rgb+oracle"
        fact     (T, F)       float32  optional: the same tasks' hidden fact alone (``fact()``)

Observation ``t`` is what the policy saw when it chose ``actions[t]``. The reader checks all of this
and raises :class:`DemoFileError` naming the file, the episode and the field that is wrong.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Self

import h5py
import numpy as np

from aem_bench.errors import InputError

FORMAT_VERSION = 1
EPISODE_PREFIX = "episode_"


class DemoFileError(InputError):
    """A demonstration file is missing, truncated or does not follow the layout above."""


@dataclass
class Episode:
    rgb: np.ndarray
    qpos: np.ndarray
    actions: np.ndarray
    seed: int
    success: bool
    oracle: np.ndarray | None = None  # (T, K): what the hidden fact says to do, when recorded
    fact: np.ndarray | None = None  # (T, F): the hidden fact alone, when recorded

    def __len__(self) -> int:
        return len(self.actions)


@dataclass
class DemoSet:
    env_id: str
    env_kwargs: dict
    versions: dict
    episodes: list[Episode]

    @property
    def num_steps(self) -> int:
        return sum(len(ep) for ep in self.episodes)


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide what a recorded episode looks like."""
    versions = {}
    for name in ("aem-bench", "sapien", "mani_skill", "gymnasium", "numpy", "torch"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


class DemoWriter:
    """Writes episodes one at a time; each is flushed so an interrupted run keeps what it wrote."""

    def __init__(self, path: str | os.PathLike, env_id: str, env_kwargs: dict | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self.path, "w")
        self._file.attrs["format_version"] = FORMAT_VERSION
        self._file.attrs["env_id"] = env_id
        self._file.attrs["env_kwargs"] = json.dumps(env_kwargs or {}, sort_keys=True)
        self._file.attrs["versions"] = json.dumps(package_versions(), sort_keys=True)
        self._count = 0

    def add(self, episode: Episode) -> None:
        _check_episode(episode, where=f"episode {self._count}")
        group = self._file.create_group(f"{EPISODE_PREFIX}{self._count:05d}")
        group.create_dataset("rgb", data=episode.rgb, compression="lzf", chunks=True)
        group.create_dataset("qpos", data=episode.qpos.astype(np.float32))
        group.create_dataset("actions", data=episode.actions.astype(np.float32))
        for key in ("oracle", "fact"):
            if getattr(episode, key) is not None:
                group.create_dataset(key, data=getattr(episode, key).astype(np.float32))
        group.attrs["seed"] = int(episode.seed)
        group.attrs["success"] = bool(episode.success)
        self._file.flush()
        self._count += 1

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check_episode(ep: Episode, where: str) -> None:
    steps = len(ep.actions)
    if steps == 0:
        raise DemoFileError(f"{where}: has no steps")
    checks = [
        ("rgb", ep.rgb, 4, np.uint8),
        ("qpos", ep.qpos, 2, np.floating),
        ("actions", ep.actions, 2, np.floating),
    ]
    checks += [(key, getattr(ep, key), 2, np.floating) for key in ("oracle", "fact")
               if getattr(ep, key) is not None]
    for name, array, ndim, dtype in checks:
        if array.ndim != ndim:
            raise DemoFileError(f"{where}: '{name}' has {array.ndim} dims, expected {ndim}")
        if not np.issubdtype(array.dtype, dtype):
            raise DemoFileError(f"{where}: '{name}' has dtype {array.dtype}, expected {dtype}")
        if len(array) != steps:
            raise DemoFileError(
                f"{where}: '{name}' has {len(array)} steps but 'actions' has {steps}"
            )
        if dtype is not np.uint8 and not np.isfinite(array).all():
            raise DemoFileError(f"{where}: '{name}' contains NaN or inf")
    if ep.rgb.shape[-1] != 3:
        raise DemoFileError(f"{where}: 'rgb' must be (T, H, W, 3), got {ep.rgb.shape}")


def load_demos(path: str | os.PathLike) -> DemoSet:
    """Read and validate a demonstration file; raise :class:`DemoFileError` naming the problem."""
    path = Path(path)
    if path.is_dir():
        raise DemoFileError(f"{path} is a folder; expected a demonstration file (.h5)")
    if not path.is_file():
        raise DemoFileError(f"{path}: no such demonstration file")
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise DemoFileError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {err}")
    with handle as f:
        for key in ("format_version", "env_id", "env_kwargs", "versions"):
            if key not in f.attrs:
                raise DemoFileError(f"{path}: missing file attribute '{key}'")
        if int(f.attrs["format_version"]) != FORMAT_VERSION:
            raise DemoFileError(
                f"{path}: format_version {f.attrs['format_version']} is not {FORMAT_VERSION}"
            )
        try:
            env_kwargs = json.loads(f.attrs["env_kwargs"])
            versions = json.loads(f.attrs["versions"])
        except json.JSONDecodeError as err:
            raise DemoFileError(f"{path}: file attribute is not valid JSON: {err}")
        names = sorted(k for k in f if k.startswith(EPISODE_PREFIX))
        if not names:
            raise DemoFileError(f"{path}: contains no episodes")
        episodes = [_read_episode(f[name], f"{path}:{name}") for name in names]
        return DemoSet(str(f.attrs["env_id"]), env_kwargs, versions, episodes)


def _read_episode(group: h5py.Group, where: str) -> Episode:
    for key in ("rgb", "qpos", "actions"):
        if key not in group:
            raise DemoFileError(f"{where}: missing dataset '{key}'")
    for key in ("seed", "success"):
        if key not in group.attrs:
            raise DemoFileError(f"{where}: missing attribute '{key}'")
    try:
        episode = Episode(
            rgb=group["rgb"][()],
            qpos=group["qpos"][()],
            actions=group["actions"][()],
            seed=int(group.attrs["seed"]),
            success=bool(group.attrs["success"]),
            oracle=group["oracle"][()] if "oracle" in group else None,
            fact=group["fact"][()] if "fact" in group else None,
        )
    except OSError as err:  # h5py raises OSError on damaged chunks
        raise DemoFileError(f"{where}: data cannot be read (corrupt?): {err}")
    _check_episode(episode, where)
    return episode
