"""Small fixtures shared by the policy tests: fitted policies, random observations and demos."""

import numpy as np
import torch

from aem_bench.demos import DemoWriter, Episode


def fitted(policy, seed=0):
    rng = np.random.default_rng(seed)
    policy.fit_normalization(rng.normal(size=(50, 16)), rng.normal(size=(50, 16)))
    return policy


def observation(size, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "rgb": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        "qpos": rng.normal(size=16).astype(np.float32),
    }


def rollout(policy, seed, steps=6, size=32):
    policy.reset(seed)
    return np.stack([policy.act(observation(size, seed=t)) for t in range(steps)])


def write_demos(path, episodes=2, steps=12, size=32, seed=0, oracle_size=0):
    rng = np.random.default_rng(seed)
    with DemoWriter(path, "AEM/Test-v0") as writer:
        for i in range(episodes):
            qpos = np.cumsum(rng.normal(0, 0.05, (steps, 16)), axis=0).astype(np.float32)
            qpos[:, 7] = 0.04  # a gripper that never moves: the constant-dimension guard
            rgb = rng.integers(0, 256, (steps, size, size, 3), dtype=np.uint8)
            oracle = (np.eye(oracle_size, dtype=np.float32)[np.full(steps, i % oracle_size)]
                      if oracle_size else None)
            writer.add(Episode(rgb, qpos, np.roll(qpos, -1, axis=0), seed=i, success=True,
                               oracle=oracle))
    return path


def run_killed_then_resumed(monkeypatch, module, step: int, run) -> None:
    """``run(resume=False)`` killed at training step ``step`` (``module.batch_rows`` raises as a
    kill would), then ``run(resume=True)`` to the end."""
    original = module.batch_rows

    def killed(at, *args):
        if at == step:
            raise KeyboardInterrupt
        return original(at, *args)

    monkeypatch.setattr(module, "batch_rows", killed)
    try:
        run(resume=False)
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError(f"the run was not interrupted at step {step}")
    monkeypatch.setattr(module, "batch_rows", original)
    run(resume=True)


def fixed_batch(horizon: int, size: int = 32, batch: int = 8, seed: int = 0) -> dict:
    """Random frames and state, and smooth action chunks in [-1, 1] like joint targets."""
    rng = np.random.default_rng(seed)
    return {
        "rgb": torch.from_numpy(rng.integers(0, 256, (batch, horizon, size, size, 3),
                                             dtype=np.uint8)),
        "state": torch.from_numpy(rng.normal(size=(batch, horizon, 16)).astype(np.float32)),
        "actions": torch.from_numpy(
            np.cumsum(rng.normal(0, 0.3, (batch, 8, 16)), axis=1).clip(-1, 1).astype(np.float32)),
    }


def loss_ratio_after_training(model, batch: dict, steps: int, lr: float = 3e-3) -> float:
    """The model's loss on ``batch`` after ``steps`` AdamW steps on it, over the loss before,
    both with the same crops, masks and noise (a fixed generator). A dict of losses counts its
    "loss"."""

    def fixed_loss() -> float:
        with torch.no_grad():
            loss = model.compute_loss(batch, torch.Generator().manual_seed(0))
        return float(loss["loss"] if isinstance(loss, dict) else loss)

    before = fixed_loss()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        loss = model.compute_loss(batch, generator)
        optimizer.zero_grad()
        (loss["loss"] if isinstance(loss, dict) else loss).backward()
        optimizer.step()
    return fixed_loss() / before
