"""Data-parallel training under ``torchrun``: one global batch split across the processes.

``torchrun --nproc-per-node N -m aem_bench.cli train ...`` starts N processes with the
``torch.distributed`` environment variables set. :func:`process_group` joins them (gloo on the
CPU, where training runs; NCCL for CUDA tensors when a GPU is present), and the training loop wraps
the model in DistributedDataParallel. The goal is the run one process would make with the same
global batch, so that a multi-process run can be compared with, and resumed as, a single one:

- every rank builds the same global batch of a step (same seeded permutation) and keeps its
  block of ``batch_size / N`` rows (:func:`rank_rows`);
- every random draw of the loss (crops, masks, diffusion noise and timesteps) is drawn for the
  whole global batch from the shared generator and cut to the rank's rows
  (:class:`ShardedRandomness`), so rank r sees the numbers one process gives those samples;
- DDP averages the gradients of equal-sized slices: the gradient of the global mean loss.

What differs from one process is the order of float summation in the all-reduce, so losses and
weights agree to rounding, not bit for bit. Only rank 0 writes checkpoints, logs and progress.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch.overrides import TorchFunctionMode

from aem_bench.errors import UsageError

# The factories that draw from a generator with the batch as the leading dimension.
_BATCHED_DRAWS = (torch.rand, torch.randn, torch.randint)


def launched_world_size() -> int:
    """How many processes ``torchrun`` started (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_rank() -> int:
    """This process's rank among them, before the process group exists (0 outside torchrun)."""
    return int(os.environ.get("RANK", "0"))


def local_world_size() -> int:
    """How many of them share this machine (they share its CPUs)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Whether this process writes files and shows progress (rank 0, or the only process)."""
    return rank() == 0


@contextmanager
def process_group() -> Iterator[None]:
    """Join the processes that ``torchrun`` started, for the duration of the block.

    Does nothing for a single process or when a group already exists (the caller's); a group
    made here is destroyed on the way out.
    """
    if launched_world_size() <= 1 or (dist.is_available() and dist.is_initialized()):
        yield
        return
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    # Gloo for CPU tensors (training runs on the CPU); NCCL for CUDA ones when there is a GPU.
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    try:
        yield
    finally:
        dist.destroy_process_group()


def rank_rows(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """This rank's block of rows of every tensor of the global ``batch`` (all batch-major)."""
    size, ranks = len(next(iter(batch.values()))), world_size()
    if size % ranks:
        raise UsageError("batch_size", f"the global batch of {size} samples does not split "
                         f"evenly over {ranks} processes: use a batch size divisible by {ranks}")
    share = size // ranks
    rows = slice(rank() * share, (rank() + 1) * share)
    return {key: value[rows] for key, value in batch.items()}


def mean_over_ranks(values: list[float]) -> list[float]:
    """The mean of each of ``values`` over the ranks (the global batch's mean loss)."""
    if not is_distributed():
        return values
    total = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(total)
    return (total / world_size()).tolist()


class ShardedRandomness(TorchFunctionMode):
    """Inside the block, ``torch.rand/randn/randint(..., generator=generator)`` draw for the
    whole global batch and return this rank's rows.

    It assumes what the zoo's losses do: every draw from the training generator is batch-major
    (its first dimension is the local batch, or the local batch times a fixed count per sample,
    in sample order). Draws from other generators pass through untouched.
    """

    def __init__(self, generator: torch.Generator):
        super().__init__()
        self.generator = generator

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if kwargs.get("generator") is not self.generator or func not in _BATCHED_DRAWS:
            return func(*args, **kwargs)
        if func is torch.randint:  # randint([low,] high, size)
            *bounds, size = args if "size" not in kwargs else (*args, kwargs.pop("size"))
        else:  # rand/randn(*size) or rand/randn(size)
            bounds = []
            size = kwargs.pop("size", args[0] if len(args) == 1 and not isinstance(args[0], int)
                              else args)
        size = tuple(size)
        share = size[0]
        drawn = func(*bounds, (share * world_size(), *size[1:]), **kwargs)
        return drawn[rank() * share : (rank() + 1) * share]


class LossModule(torch.nn.Module):
    """``model.compute_loss`` as ``forward``: DDP synchronises gradients only for work done
    through its ``forward``."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict, generator: torch.Generator):
        return self.model.compute_loss(batch, generator=generator)
