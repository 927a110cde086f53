"""Policy zoo.

A policy is registered under a name as a (config class, model class) pair. A checkpoint is a
directory holding ``config.json`` (``format_version``, ``policy_type`` and the config fields) and
``model.safetensors`` (the state dict, normalisation stats included). Loading reads JSON and
safetensors only, so a checkpoint can never run code, and it checks every tensor name and shape
against the model the config describes before anything is copied.

Every registered model provides ``config`` (with ``to_dict()``/``from_dict()``), ``reset(seed)`` and
``act(observation) -> np.ndarray``; trainable ones also ``fit_normalization`` and ``compute_loss``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from aem_bench.policies.configuration_diffusion import DiffusionConfig
from aem_bench.policies.modeling_diffusion import DiffusionPolicy

FORMAT_VERSION = 2  # 2: the low-dimensional input is "state" (state_keys), was "qpos"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

POLICIES: dict[str, tuple[type, type[torch.nn.Module]]] = {
    "singleframe-dp": (DiffusionConfig, DiffusionPolicy),
}


class CheckpointError(ValueError):
    """A checkpoint directory is missing, corrupt, or describes another model than its weights."""


def make_policy(name: str, **config_overrides) -> torch.nn.Module:
    """A freshly initialised policy ``name`` whose config defaults are replaced by the overrides."""
    if name not in POLICIES:
        raise KeyError(f"unknown policy '{name}'; registered: {sorted(POLICIES)}")
    config_cls, policy_cls = POLICIES[name]
    if config_overrides.get("policy_type", name) != name:
        raise ValueError(f"policy_type={config_overrides['policy_type']!r} contradicts '{name}'")
    return policy_cls(config_cls.from_dict({**config_overrides, "policy_type": name}))


def save_policy(policy: torch.nn.Module, directory: str | os.PathLike) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``directory`` (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {"format_version": FORMAT_VERSION, **policy.config.to_dict()}
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    state = {key: value.detach().cpu().contiguous() for key, value in policy.state_dict().items()}
    save_file(state, directory / WEIGHTS_NAME, metadata={"policy_type": policy.config.policy_type})
    return directory


def load_policy(
    directory: str | os.PathLike, device: str | torch.device = "cpu"
) -> torch.nn.Module:
    """Rebuild the policy described by ``directory/config.json`` and load its weights, in eval mode.

    Raises :class:`CheckpointError` naming the file and the mismatch when anything is off.
    """
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME

    try:
        raw = json.loads(config_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{config_path}: no such file (not a policy checkpoint?)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{config_path}: not readable JSON: {err}") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{config_path}: expected a JSON object")
    version = raw.pop("format_version", None)
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{config_path}: format_version {version!r}, this code reads {FORMAT_VERSION}"
        )
    name = raw.get("policy_type")
    if name not in POLICIES:
        raise CheckpointError(
            f"{config_path}: unknown policy_type {name!r}; registered: {sorted(POLICIES)}"
        )
    config_cls, policy_cls = POLICIES[name]
    try:
        config = config_cls.from_dict(raw)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{config_path}: invalid config: {err}") from None

    policy = policy_cls(config)
    try:
        tensors = load_file(weights_path, device=str(device))
    except FileNotFoundError:
        raise CheckpointError(f"{weights_path}: no such file") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{weights_path}: not a readable safetensors file: {err}") from None

    expected = policy.state_dict()
    problems = [f"missing tensor '{key}'" for key in sorted(set(expected) - set(tensors))]
    problems += [f"unexpected tensor '{key}'" for key in sorted(set(tensors) - set(expected))]
    for key in sorted(set(expected) & set(tensors)):
        want, got = expected[key], tensors[key]
        if want.shape != got.shape:
            problems.append(
                f"tensor '{key}' has shape {tuple(got.shape)} in the file but "
                f"{tuple(want.shape)} in the model the config describes"
            )
        elif want.dtype != got.dtype:
            problems.append(
                f"tensor '{key}' is {got.dtype} in the file, the model wants {want.dtype}"
            )
    if problems:
        shown = "; ".join(problems[:8])
        if len(problems) > 8:
            shown += f"; and {len(problems) - 8} more"
        raise CheckpointError(
            f"{weights_path} does not match {config_path} (policy_type '{name}'): {shown}"
        )
    policy.load_state_dict(tensors, strict=True)
    policy.to(device).eval()
    policy.reset()  # so its sampling generator lives on ``device``
    return policy
