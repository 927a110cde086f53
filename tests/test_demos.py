"""Demonstration files: a real expert episode written, read back, and damaged in several ways."""

import json

import h5py
import numpy as np
import pytest

from aem_bench.demos import DemoFileError, DemoWriter, Episode, load_demos
from aem_bench.expert import run_expert

TASK = "AEM/HandoverBlock-v0"


@pytest.fixture(scope="module")
def expert_episode(handover_env) -> Episode:
    result = run_expert(handover_env, seed=0, record=True)
    assert result.success
    return result.episode


@pytest.fixture
def demo_file(tmp_path, expert_episode):
    path = tmp_path / "demos.h5"
    with DemoWriter(path, TASK, {"camera_size": [128, 128]}) as writer:
        writer.add(expert_episode)
        writer.add(expert_episode)
    return path


def test_round_trip(demo_file, expert_episode):
    demos = load_demos(demo_file)
    assert demos.env_id == TASK and demos.env_kwargs == {"camera_size": [128, 128]}
    assert {"sapien", "gymnasium", "aem-bench"} <= set(demos.versions)
    assert len(demos.episodes) == 2 and demos.num_steps == 2 * len(expert_episode)
    ep = demos.episodes[0]
    assert np.array_equal(ep.rgb, expert_episode.rgb)
    assert np.array_equal(ep.actions, expert_episode.actions)
    assert ep.seed == 0 and ep.success
    # Observation t is what the expert saw before action t: the first qpos is the home pose.
    assert ep.rgb.shape[0] == ep.qpos.shape[0] == ep.actions.shape[0]


def _damage(path, edit):
    with h5py.File(path, "a") as f:
        edit(f)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda f: f["episode_00001"].__delitem__("actions"), "episode_00001: missing dataset 'actions'"),
        (lambda f: f["episode_00000"].attrs.__delitem__("seed"), "missing attribute 'seed'"),
        (lambda f: f.attrs.__delitem__("env_id"), "missing file attribute 'env_id'"),
        (lambda f: f.attrs.__setitem__("format_version", 99), "format_version 99"),
        (lambda f: f.attrs.__setitem__("env_kwargs", "{not json"), "not valid JSON"),
        (lambda f: [f.__delitem__(k) for k in list(f.keys())], "contains no episodes"),
    ],
)
def test_bad_files_name_the_problem(demo_file, edit, message):
    _damage(demo_file, edit)
    with pytest.raises(DemoFileError, match=message):
        load_demos(demo_file)


def test_inconsistent_lengths_and_nan(demo_file):
    def shorten(f):
        qpos = f["episode_00000/qpos"][()]
        del f["episode_00000/qpos"]
        f["episode_00000/qpos"] = qpos[:-3]

    _damage(demo_file, shorten)
    with pytest.raises(DemoFileError, match="'qpos' has .* steps but 'actions' has"):
        load_demos(demo_file)


def test_nan_actions_rejected(tmp_path, expert_episode):
    bad = Episode(expert_episode.rgb, expert_episode.qpos, expert_episode.actions.copy(), 0, True)
    bad.actions[3, 2] = np.nan
    with DemoWriter(tmp_path / "x.h5", TASK) as writer, pytest.raises(DemoFileError, match="NaN"):
        writer.add(bad)


def test_truncated_and_missing_files(tmp_path, demo_file):
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(demo_file.read_bytes()[:2000])
    with pytest.raises(DemoFileError, match="truncated or corrupt"):
        load_demos(truncated)
    with pytest.raises(DemoFileError, match="no such demonstration file"):
        load_demos(tmp_path / "absent.h5")
    with pytest.raises(DemoFileError, match="is a folder; expected a demonstration file"):
        load_demos(tmp_path)
    text = tmp_path / "notes.h5"
    text.write_text(json.dumps({"hello": 1}))
    with pytest.raises(DemoFileError, match="not a readable HDF5 file"):
        load_demos(text)
