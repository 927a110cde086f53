from pathlib import Path

import gymnasium as gym
import pytest

import aem_bench  # noqa: F401

TASK = "AEM/HandoverBlock-v0"


@pytest.fixture(scope="session")
def handover_env():
    """One environment for the session: the first picture in a process costs ~10 s (SAPIEN builds
    a BRDF lookup table on the CPU renderer), so tests that only reset and step share it."""
    env = gym.make(TASK, render_mode="rgb_array")
    yield env
    env.close()


@pytest.fixture(scope="module")
def envs(request):
    """One state-mode (no rendering) environment per id in the test module's ``TASKS``."""
    made = {task: gym.make(task, obs_mode="state") for task in request.module.TASKS}
    yield made
    for env in made.values():
        env.close()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small models gain nothing from a second thread, and lose a lot when the CPU is shared."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance for the test module (two CPUs, no dashboard), skipped without Ray.
    Its workers import test helpers (``tests/test_evaluator.py``'s environments and policy
    factory), so the tests folder goes on their PYTHONPATH."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parent)}})
    yield ray
    ray.shutdown()
