"""The camera shader: SAPIEN's "minimal" pack less image-based lighting renders the same pixels."""

import os
import subprocess
import sys

import numpy as np

SNAPSHOT = """
import sys
import numpy as np
import gymnasium as gym
import aem_bench
env = gym.make("AEM/HandoverBlock-Randomized-v0")
obs, _ = env.reset(seed=3)
for action, _ in zip(env.unwrapped.expert(), range(30)):
    obs, *_ = env.step(action)
np.save(sys.argv[1], obs["rgb"])
"""


def snapshot(path, shader=None):
    env = {**os.environ, "AEM_CAMERA_SHADER": shader} if shader else None
    out = subprocess.run([sys.executable, "-c", SNAPSHOT, str(path)], capture_output=True,
                         text=True, timeout=300, env=env, check=False)
    assert out.returncode == 0, out.stderr
    return np.load(path)


def test_shader_without_image_lighting_renders_the_same_pixels(tmp_path):
    ours = snapshot(tmp_path / "ours.npy")
    stock = snapshot(tmp_path / "stock.npy", shader="minimal")
    assert ours.std() > 10  # a real picture
    np.testing.assert_array_equal(ours, stock)
