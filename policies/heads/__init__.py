"""Action heads: generative models of an action chunk given a condition vector.

A head owns its denoising network (the FiLM-conditioned 1-D UNet of ``unet1d.py``) and its
sampler, and offers two calls on normalised actions in [-1, 1]::

    head.loss(actions, cond, generator)   # actions (B, Tp, A), cond (B, C) -> scalar
    head.sample(cond, generator)          # cond (B, C) -> actions (B, Tp, A)

- ``diffusion``: DDPM training, DDIM sampling (Diffusion Policy, Chi et al. 2023).
- ``flow``: flow matching with few-step Euler sampling, optionally with a consistency loss in
  the spirit of ManiFlow (Yan et al. 2025) for 1-2 step sampling.

Part of the policy zoo: heads import torch and the zoo's ``unet1d`` (their denoising network),
never an encoder, the tasks, the evaluator or anything above.
"""

from __future__ import annotations

from aem_bench.policies.heads.diffusion import DiffusionHead
from aem_bench.policies.heads.flow import FlowHead

HEADS = {"diffusion": DiffusionHead, "flow": FlowHead}


def make_head(config, cond_dim: int):
    if config.head not in HEADS:
        raise KeyError(f"unknown head '{config.head}'; registered: {sorted(HEADS)}")
    return HEADS[config.head](config, cond_dim)
