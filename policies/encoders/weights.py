"""Reading pretrained encoder weights, safely and with errors that say what to do.

No model hub is reachable on our machines, so weights come from a local file (``weights=PATH``) or
from the library's own cache, filled on a machine that can download. ``weights="random"`` builds
the architecture with random weights on purpose (tests, timing), never as a silent fallback.

Files are read without executing code: safetensors, or ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
from safetensors.torch import load_file

from aem_bench.errors import InputError


class MissingWeightsError(FileNotFoundError, InputError):
    """Pretrained weights were asked for and are not on this machine (a FileNotFoundError, and
    bad input to the command line)."""


def missing(encoder: str, looked: str, how: str) -> MissingWeightsError:
    return MissingWeightsError(
        f"{encoder}: no pretrained weights on this machine (looked in {looked}). {how} "
        f"Or pass weights=PATH in encoder_options (e.g. --config "
        f"'{{\"encoder_options\": {{\"weights\": \"/path/to/file\"}}}}'), or weights=\"random\" "
        f"for an untrained network."
    )


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a torch pickle of tensors, loaded without running code."""
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except Exception as err:  # noqa: BLE001 -- safetensors' own error class, or an OSError
            raise InputError(f"{path}: not a readable safetensors file ({type(err).__name__}: "
                             f"{err})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        raise InputError(
            f"{path}: not loadable as plain tensors ({type(err).__name__}: {err}). TorchScript "
            "archives and pickles of code are refused; save the state dict, e.g. as safetensors."
        ) from None
    if not isinstance(state, dict):
        raise InputError(f"{path}: expected a dict of tensors, got {type(state).__name__}")
    return state


def load_exactly(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``module.load_state_dict(state)``, with one message listing what does not match."""
    expected = module.state_dict()
    problems = [f"missing '{k}'" for k in sorted(set(expected) - set(state))]
    problems += [f"unexpected '{k}'" for k in sorted(set(state) - set(expected))]
    problems += [f"'{k}' is {tuple(state[k].shape)}, the model has {tuple(expected[k].shape)}"
                 for k in sorted(set(expected) & set(state)) if state[k].shape != expected[k].shape]
    if problems:
        more = f"; and {len(problems) - 6} more" if len(problems) > 6 else ""
        raise InputError(f"{source} does not fit the architecture: {'; '.join(problems[:6])}{more}")
    module.load_state_dict(state)


def resolve(weights: str | None, cached: Path | None, encoder: str, looked: str,
            how: str) -> Path | None:
    """The weights file to load: ``weights`` itself, else the cached file; None for "random".

    Raises :class:`MissingWeightsError` naming where to put the weights when there are none."""
    if weights == "random":
        return None
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise MissingWeightsError(f"{encoder}: weights file {path} does not exist")
        return path
    if cached is None or not cached.is_file():
        raise missing(encoder, looked, how)
    return cached
