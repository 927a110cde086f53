"""Data-parallel training: ``torchrun --nproc-per-node 2`` makes the run of one process.

A tiny policy trains 30 steps on a global batch of 8, once in this process and once as two gloo
processes on the CPU (4 samples each) started by torchrun through the real CLI. Same batches, same
crops and noise (drawn for the global batch and split), averaged gradients: the logged losses and
the final weights agree to float rounding. Rounding is all that differs (the all-reduce sums in
another order), and it compounds through 30 AdamW steps, hence rtol 1e-5 on the logged losses
and atol 1e-6 on the weights rather than equality (one exception, explained in the test).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from policy_helpers import write_demos
from safetensors.torch import load_file
from test_policy import TINY

from aem_bench.policies import distributed
from aem_bench.policies.training import LOG_NAME, train

STEPS, BATCH = 30, 8


def _losses(checkpoint):
    lines = (checkpoint / LOG_NAME).read_text().splitlines()
    return [(entry["step"], entry["loss"]) for entry in map(json.loads, lines)]


def _torchrun(processes: int, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone",
         f"--nproc-per-node={processes}", "-m", "aem_bench.cli", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.slow
def test_two_torchrun_processes_train_like_one(tmp_path):
    demos = write_demos(tmp_path / "demos.h5", episodes=2, steps=12, size=32)
    config = {key: list(value) if isinstance(value, tuple) else value
              for key, value in TINY.items() if key != "image_size"}
    one = tmp_path / "one"
    train("singleframe-dp", demos, one, steps=STEPS, batch_size=BATCH, seed=3,
          config_overrides=config, num_threads=1, progress=False)

    two = tmp_path / "two"
    run = _torchrun(2, "train", "--policy", "singleframe-dp", "--demos", str(demos),
                    "--out", str(two), "--steps", str(STEPS), "--batch-size", str(BATCH),
                    "--seed", "3", "--config", json.dumps(config), "--threads", "1")
    assert run.returncode == 0, run.stderr[-3000:]

    single, parallel = _losses(one), _losses(two)
    assert [step for step, _ in parallel] == [step for step, _ in single] == [10, 20, 30]
    # Observed: relative differences of ~2e-8.
    np.testing.assert_allclose([loss for _, loss in parallel], [loss for _, loss in single],
                               rtol=1e-5)
    weights_one, weights_two = load_file(one / "model.safetensors"), load_file(
        two / "model.safetensors")
    assert weights_one.keys() == weights_two.keys()
    for name, value in weights_one.items():
        # The spatial softmax ignores a per-channel constant, so the true gradient of the
        # keypoint conv's bias is 0 and what is left is rounding noise, which Adam scales up to
        # lr-sized steps: that one differs by ~7e-5, every other weight by ~1e-7.
        tolerance = 1e-3 if name == "encoder.pool.keypoints.bias" else 1e-6
        torch.testing.assert_close(weights_two[name], value, rtol=0, atol=tolerance, msg=name)
    # Only rank 0 wrote: one log line per interval, not two, and one "written" message.
    assert len((two / LOG_NAME).read_text().splitlines()) == 3
    assert run.stdout.count("checkpoint written to") == 1, run.stdout


def test_sharded_randomness_gives_each_rank_its_rows_of_the_global_draw(monkeypatch):
    generator = torch.Generator().manual_seed(0)
    whole = (torch.randn(6, 2, generator=generator), torch.randint(0, 9, (12,),
                                                                   generator=generator))
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    for rank in (0, 1):
        monkeypatch.setattr(distributed, "rank", lambda rank=rank: rank)
        generator.manual_seed(0)
        other = torch.Generator().manual_seed(5)
        with distributed.ShardedRandomness(generator):
            noise = torch.randn((3, 2), generator=generator)
            crops = torch.randint(9, size=(6,), generator=generator)
            untouched = torch.rand(4, generator=other)  # another generator: passes through
        torch.testing.assert_close(noise, whole[0][3 * rank : 3 * rank + 3])
        torch.testing.assert_close(crops, whole[1][6 * rank : 6 * rank + 6])
        assert untouched.shape == (4,)


@pytest.mark.parametrize("size", [8, 5])
def test_rank_rows_split_the_global_batch(monkeypatch, size):
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    batch = {"state": torch.arange(size)[:, None], "actions": torch.arange(size)}
    if size % 2:
        with pytest.raises(ValueError, match="does not split evenly over 2 processes"):
            distributed.rank_rows(batch)
        return
    rows = distributed.rank_rows(batch)
    assert rows["actions"].tolist() == [4, 5, 6, 7] and rows["state"].shape == (4, 1)


@pytest.mark.parametrize("flags", [(), ("--overwrite",)])
def test_only_rank_0_checks_out_so_a_later_rank_leaves_rank_0s_checkpoint_alone(
        tmp_path, monkeypatch, flags):
    # The race the torchrun test can lose under load, made certain: rank 0 has written its
    # checkpoint by the time rank 1 parses its command line.
    import argparse

    from aem_bench.cli.training import _check_run_dir
    from aem_bench.errors import UsageError

    (tmp_path / "model.safetensors").write_bytes(b"rank 0's")
    args = argparse.Namespace(out=str(tmp_path), resume=False, overwrite="--overwrite" in flags)
    monkeypatch.setenv("RANK", "1")
    _check_run_dir(args, ("model.safetensors",))
    assert (tmp_path / "model.safetensors").read_bytes() == b"rank 0's"
    monkeypatch.setenv("RANK", "0")  # rank 0 still refuses or removes what was there before it
    if flags:
        _check_run_dir(args, ("model.safetensors",))
        assert not (tmp_path / "model.safetensors").exists()
    else:
        with pytest.raises(UsageError, match="holds a checkpoint"):
            _check_run_dir(args, ("model.safetensors",))
