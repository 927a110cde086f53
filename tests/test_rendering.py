"""The camera shader: SAPIEN's "minimal" pack less image-based lighting renders the same pixels."""

import os
import subprocess
import sys

import numpy as np
import pytest

from aem_bench.sim import tabletop

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


def test_a_shader_that_cannot_be_patched_is_an_error_unless_the_stock_one_is_chosen(
        tmp_path, monkeypatch):
    # As if SAPIEN's minimal shader had changed: the code to remove is not found in it.
    monkeypatch.setitem(tabletop._SHADER_PATCHES, "gbuffer.frag",
                        ("  color += diffuseIBL_of_an_older_sapien();\n", ""))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # no pack built before
    monkeypatch.delenv("AEM_CAMERA_SHADER", raising=False)
    tabletop._shader_pack_without_ibl.cache_clear()
    try:
        with pytest.raises(RuntimeError) as failure:
            tabletop.camera_shader_dir()
        message = str(failure.value)
        assert "cannot build the camera shader minimal_no_ibl" in message
        assert "(in gbuffer.frag)" in message and "set AEM_CAMERA_SHADER=minimal" in message
        assert not list(tmp_path.glob("aem_bench/*"))
        monkeypatch.setenv("AEM_CAMERA_SHADER", "minimal")
        assert tabletop.camera_shader_dir() == "minimal"
    finally:
        tabletop._shader_pack_without_ibl.cache_clear()


def test_the_patched_shader_pack_is_built_from_the_installed_sapien(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("AEM_CAMERA_SHADER", raising=False)
    tabletop._shader_pack_without_ibl.cache_clear()
    try:
        pack = tabletop.camera_shader_dir()
    finally:
        tabletop._shader_pack_without_ibl.cache_clear()
    assert pack.startswith(str(tmp_path)) and pack.endswith("minimal_no_ibl")
    with open(os.path.join(pack, "gbuffer.frag")) as shader:
        assert "diffuseIBL(diffuseAlbedo" not in shader.read()
