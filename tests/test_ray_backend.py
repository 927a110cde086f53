"""Ray backend of the evaluator: the same records as a local run, and a dead actor names its seed.

The tests share one local Ray instance for the module (conftest's ``local_ray``). Its workers
import the test environments and the policy factory from ``tests/test_evaluator.py``.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("ray")

from test_evaluator import (
    COUNTDOWN,
    check_a_dying_worker_stops_the_run_and_the_rerun_resumes,
    hold_pose_policy,
)

from aem_bench.evaluator import EvaluationError, evaluate


def _key(report):
    return [(r.seed, r.success, r.steps, r.error) for r in report.records]


@pytest.mark.slow
def test_ray_actors_give_the_records_of_a_local_run(local_ray, tmp_path):
    local = evaluate(hold_pose_policy, COUNTDOWN, episodes=6, seed=20, progress=False)
    log = tmp_path / "log.jsonl"
    on_ray = evaluate(hold_pose_policy, COUNTDOWN, episodes=6, seed=20, progress=False,
                      workers=2, backend="ray", log=log)
    assert _key(on_ray) == _key(local)
    assert all(len(r.latencies_ms) == r.steps for r in on_ray.records)
    logged = [json.loads(line)["seed"] for line in log.read_text().splitlines()[1:]]
    assert sorted(logged) == list(range(20, 26))


def test_a_dead_ray_actor_names_its_seed_and_the_rerun_resumes(local_ray, tmp_path):
    check_a_dying_worker_stops_the_run_and_the_rerun_resumes(
        tmp_path, "Ray worker running seed 13 died", backend="ray")


def test_a_policy_that_raises_on_ray_stops_the_run_with_its_seed(local_ray):
    with pytest.raises(EvaluationError, match=r"seed 10, step 0: the policy raised"):
        evaluate(_raising_policy, COUNTDOWN, episodes=2, seed=10, backend="ray", progress=False)


def _raising_policy():
    from test_evaluator import HoldPosePolicy

    class Raising(HoldPosePolicy):
        def act(self, observation):
            raise ZeroDivisionError("bug")

    return Raising()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"backend": "dask"}, "backend must be 'local' or 'ray', got 'dask'"),
        ({"address": "10.0.0.1:6379"}, "needs backend='ray'"),
        ({"backend": "ray", "policy": "instance"}, "backend='ray' needs a function"),
    ],
)
def test_bad_backend_arguments_are_refused(kwargs, message):
    from test_evaluator import HoldPosePolicy

    policy = HoldPosePolicy() if kwargs.pop("policy", None) else hold_pose_policy
    with pytest.raises(ValueError, match=message):
        evaluate(policy, COUNTDOWN, episodes=1, progress=False, **kwargs)


def test_eval_command_takes_backend_and_address():
    from aem_bench.cli import build_parser

    args = build_parser().parse_args(["eval", "--policy", "ckpt", "--backend", "ray",
                                      "--address", "ray://head:10001", "--workers", "4"])
    assert (args.backend, args.address, args.workers) == ("ray", "ray://head:10001", 4)
    assert build_parser().parse_args(["eval", "--policy", "ckpt"]).backend == "local"
