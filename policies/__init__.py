"""Policy zoo.

Every policy is a :class:`VisuomotorPolicy`: an image encoder (``encoders/``), a window of
``obs_horizon`` observations, a memory for some, and an action head (``heads/``). A named policy
is a set of config defaults, ``ENCODER-HEAD``:

=============  ==============================================================================
encoder        ``singleframe`` (ResNet from scratch, 1 frame), ``framestack`` (the same, 8
               frames), ``dinov2``, ``clip``, ``r3m`` (pretrained, frozen, features cached),
               ``aem`` (the frame and AEM's history vector, from ``aem-bench pretrain``)
head           ``dp`` (Diffusion Policy: DDPM training, DDIM sampling), ``flow`` (flow
               matching, few Euler steps)
=============  ==============================================================================

A checkpoint is a
directory holding ``config.json`` (``format_version``, ``policy_type`` and the config fields) and
``model.safetensors`` (the state dict, normalisation stats included). Loading reads JSON and
safetensors only, so a checkpoint can never run code, and it checks every tensor name and shape
against the model the config describes before anything is copied.

Every registered model provides ``config`` (with ``to_dict()``/``from_dict()``), ``reset(seed)`` and
``act(observation) -> np.ndarray``; trainable ones also ``fit_normalization`` and ``compute_loss``.

What lives here: this registry, the configs (``config_base``, ``configuration_*``), the models
(``modeling_visuomotor``, ``modeling_aem`` with ``mamba``, ``memory``, ``unet1d``),
``preprocessing``, training (``training``, ``pretraining``, ``distributed``, ``feature_cache``),
``encoders/`` and ``heads/``. The layer above the tasks and below evaluation: the zoo imports
torch, its own modules and of aem-bench only the foundations (``errors``, ``demos``,
``progress``, ``provenance``); a policy sees observations, not scenes, so it never imports the
simulator or the tasks, and never the evaluator, the leaderboard or the command line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from aem_bench.errors import InputError, UsageError
from aem_bench.policies.configuration_aem import AEMConfig
from aem_bench.policies.configuration_visuomotor import PolicyConfig
from aem_bench.policies.modeling_aem import AEMPretrainer
from aem_bench.policies.modeling_visuomotor import VisuomotorPolicy

# Raised whenever a checkpoint's config or weight names change meaning, so that load_policy
# refuses a checkpoint this code would misread. This one: the low-dimensional input named by
# ``state_keys``; encoder and head modules of their own ("encoder.*", "head.*"), named in the
# config.
FORMAT_VERSION = 3
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

ENCODER_DEFAULTS = {
    "singleframe": {"encoder": "resnet", "obs_horizon": 1},
    # k = 8 frames, each through the same ResNet, features side by side: the past a frame stack
    # sees, to compare with AEM's one history vector on equal terms.
    "framestack": {"encoder": "resnet", "obs_horizon": 8},
    "dinov2": {"encoder": "dinov2"},
    "clip": {"encoder": "clip"},
    "r3m": {"encoder": "r3m"},
    # AEM: one frame plus the history vector of a pretrained action-effect memory encoder
    # (``aem-bench pretrain``); train() takes the frame encoder and the history encoder from
    # aem_checkpoint.
    "aem": {"encoder": "resnet", "obs_horizon": 1, "history": {}},
    # A GRU memory trained with the head through whole episodes over a frozen frame encoder
    # (``memory.py``): memory without AEM pretraining.
    "gru": {"encoder": "resnet", "obs_horizon": 1, "memory": "gru", "freeze_encoder": True},
}
HEAD_DEFAULTS = {
    "dp": {"head": "diffusion", "num_inference_steps": 10},
    "flow": {"head": "flow", "num_inference_steps": 5},
}

# name -> the config defaults that make it that policy
POLICIES: dict[str, dict] = {
    f"{encoder}-{head}": {**encoder_defaults, **head_defaults}
    for encoder, encoder_defaults in ENCODER_DEFAULTS.items()
    for head, head_defaults in HEAD_DEFAULTS.items()
}


def leaderboard_parts(config: PolicyConfig) -> tuple[str, str]:
    """The (encoder, head) a results file names: the zoo's names from ``policy_type`` ("aem",
    "dp"), or the encoder's own registered name when it replaces the zoo's default (a submitted
    encoder trained under the singleframe recipe is that encoder, not "singleframe")."""
    zoo_encoder, zoo_head = config.policy_type.rsplit("-", 1)
    default = ENCODER_DEFAULTS.get(zoo_encoder, {}).get("encoder")
    return (zoo_encoder if config.encoder == default else config.encoder), zoo_head


class CheckpointError(InputError):
    """A checkpoint directory is missing, corrupt, or describes another model than its weights."""


def make_policy(name: str, **config_overrides) -> torch.nn.Module:
    """A freshly initialised policy ``name`` whose config defaults are replaced by the overrides."""
    if name not in POLICIES:
        raise UsageError("name", f"unknown policy '{name}'; registered: {sorted(POLICIES)}")
    if config_overrides.get("policy_type", name) != name:
        raise UsageError("policy_type", f"{config_overrides['policy_type']!r} contradicts "
                         f"the policy '{name}'")
    config = PolicyConfig.from_dict({**POLICIES[name], **config_overrides, "policy_type": name})
    return VisuomotorPolicy(config)


AEM_PRETRAIN = "aem-pretrain"  # the policy_type of an AEM pretraining checkpoint


def _model_type(model: torch.nn.Module) -> str:
    return AEM_PRETRAIN if isinstance(model, AEMPretrainer) else model.config.policy_type


def _build(name: str, raw: dict) -> torch.nn.Module:
    """The untrained model a checkpoint's config describes (pretrained weights not read: the
    checkpoint holds every weight)."""
    if name == AEM_PRETRAIN:
        config = AEMConfig.from_dict({k: v for k, v in raw.items() if k != "policy_type"})
        return AEMPretrainer(config, load_encoder_weights=False)
    return VisuomotorPolicy(PolicyConfig.from_dict(raw), load_encoder_weights=False)


def save_policy(policy: torch.nn.Module, directory: str | os.PathLike) -> Path:
    """Write ``config.json`` and ``model.safetensors`` of a policy, or of an AEM pretraining
    model, into ``directory`` (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = _model_type(policy)
    config = {"format_version": FORMAT_VERSION, "policy_type": name, **policy.config.to_dict()}
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    state = {key: value.detach().cpu().contiguous() for key, value in policy.state_dict().items()}
    save_file(state, directory / WEIGHTS_NAME, metadata={"policy_type": name})
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
    if name not in POLICIES and name != AEM_PRETRAIN:
        raise CheckpointError(
            f"{config_path}: unknown policy_type {name!r}; registered: {sorted(POLICIES)} "
            f"and '{AEM_PRETRAIN}'"
        )
    try:
        policy = _build(name, raw)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{config_path}: invalid config: {err}") from None
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
    if hasattr(policy, "reset"):
        policy.reset()  # so its sampling generator lives on ``device``
    return policy
