"""Submitting an encoder: entry-point discovery, reference errors, the fixed protocol, and the
example package of ``examples/`` installed and submitted end to end."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from aem_bench.cli import main
from aem_bench.demos import Episode
from aem_bench.errors import InputError, UsageError
from aem_bench.leaderboard.results import validate_result
from aem_bench.policies import encoders, load_policy
from aem_bench.policies.encoders import (
    Encoder,
    EncoderLoadError,
    installed_encoders,
    make_encoder,
)
from aem_bench.recipe import Protocol, protocol_names
from aem_bench.registration import TASKS
from aem_bench.submit import (
    SMOKE,
    SUBMISSION_FILE,
    SubmittedEncoder,
    check_encoder,
    claim_checkpoint,
    get_protocol,
    resolve_encoder,
    submission_row,
    submit,
)
from aem_bench.sweep import ROWS, Sweep

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "aem_bench_tiny_encoder"
EXAMPLE_DIST = "aem-bench-tiny-encoder"


@pytest.fixture(autouse=True)
def clean_registry():
    """Encoders registered by a test (entry points, references) are forgotten after it: other
    test modules expect the built-ins only."""
    registered, sources = dict(encoders.ENCODERS), dict(encoders._SOURCES)
    yield
    encoders.ENCODERS.clear()
    encoders.ENCODERS.update(registered)
    encoders._SOURCES.clear()
    encoders._SOURCES.update(sources)


def fake_distribution(root: Path, name: str, entry_points: dict[str, str]) -> None:
    """A distribution's metadata on ``root`` with ``aem_bench.encoders`` entry points and no
    code: what an installed package that registers encoders looks like to importlib.metadata."""
    info = root / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = [f"{key} = {value}" for key, value in entry_points.items()]
    (info / "entry_points.txt").write_text("[aem_bench.encoders]\n" + "\n".join(lines) + "\n")


# --- the protocol ----------------------------------------------------------------------------
def test_protocols_are_frozen_and_name_registered_tasks():
    assert set(protocol_names()) == {"standard", "certificate-budget", "smoke", "demo"}
    for name in protocol_names():
        protocol = get_protocol(name)
        assert all(task in TASKS for task in protocol.tasks)
        assert protocol.policy == "singleframe-dp" and protocol.head == "dp"
        json.dumps(protocol.to_dict())  # goes into every results file
        assert Protocol.from_dict(json.loads(json.dumps(protocol.to_dict()))) == protocol
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_protocol("standard").train_steps = 1  # type: ignore[misc]
    assert SMOKE.demos <= 2 and SMOKE.eval_episodes <= 2


# --- references and entry points -------------------------------------------------------------
@pytest.mark.parametrize(("reference", "message"), [
    ("no_such_encoder", "unknown encoder 'no_such_encoder'"),
    ("no_such_module_xyz:Encoder", "importing 'no_such_module_xyz' failed"),
    ("aem_bench.submit:NoSuchClass", "'aem_bench.submit' has no attribute 'NoSuchClass'"),
    ("aem_bench.submit:Protocol", "not a subclass of aem_bench.policies.encoders.Encoder"),
    (":Encoder", "is not of the form 'package.module:Class'"),
])
def test_bad_reference_is_one_clear_line(reference, message, tmp_path, capsys):
    assert main(["submit", "--encoder", reference, "--protocol", "smoke",
                 "--cache", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # rejected before any work


def test_broken_entry_point_names_itself_and_its_distribution(tmp_path, monkeypatch):
    fake_distribution(tmp_path, "broken-encoders", {
        "broken": "no_such_module_for_this_test:Encoder",
        "notanencoder": "aem_bench.submit:Protocol",
    })
    monkeypatch.syspath_prepend(str(tmp_path))

    with pytest.raises(EncoderLoadError) as failed:
        make_encoder("broken")
    message = str(failed.value)
    assert "broken = no_such_module_for_this_test:Encoder" in message
    assert "broken-encoders 0.1" in message
    assert "ModuleNotFoundError" in message
    with pytest.raises(EncoderLoadError, match="notanencoder = .* not a subclass"):
        make_encoder("notanencoder")

    # The listing goes on past a broken entry point and says what is wrong with it.
    listed = {info.name: info for info in installed_encoders()}
    assert listed["broken"].error and listed["broken"].source.distribution == "broken-encoders"
    assert "not a subclass" in listed["notanencoder"].error
    assert listed["resnet"].builtin and listed["resnet"].error is None


def test_entry_point_name_clashing_with_a_builtin_is_refused(tmp_path, monkeypatch):
    fake_distribution(tmp_path, "clashing-encoders",
                      {"resnet": "aem_bench.policies.encoders.dinov2:DINOv2Encoder"})
    monkeypatch.syspath_prepend(str(tmp_path))
    resnets = [info for info in installed_encoders() if info.name == "resnet"]
    assert [info.builtin for info in resnets] == [True, False]  # the built-in, then the refusal
    assert "clashes with the registered encoder" in resnets[1].error
    assert make_encoder("resnet").__class__.__name__ == "ResNetEncoder"


def test_import_reference_is_registered_under_itself():
    reference = "aem_bench.policies.encoders.resnet:ResNetEncoder"
    submitted = resolve_encoder(reference)
    assert submitted.name == reference and submitted.source.distribution == "aem-bench"
    assert make_encoder(reference, channels=[8, 8, 8]).feature_dim == 64


class WrongShape(Encoder):
    feature_dim = 4

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(images), 3)


def test_check_encoder_catches_a_broken_interface():
    with pytest.raises(ValueError, match=r"breaks the Encoder interface: .*\(2, 3\)"):
        check_encoder(WrongShape(), 57, "wrong")


def test_example_encoder_keeps_the_contract(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from aem_bench_tiny_encoder import TinyEncoder

    encoder = TinyEncoder(channels=8, feature_dim=12)
    assert encoder.options == {"channels": 8, "feature_dim": 12}
    check_encoder(encoder, 57, "tiny")
    assert encoder(torch.zeros(3, 116, 116, 3, dtype=torch.uint8)).shape == (3, 12)


def fake_rollouts(calls: list):
    """Stands in for the expert: every seed succeeds with a 3-step episode at 8x8."""

    def rollouts(env_id, seeds, record=False, **env_kwargs):
        calls.append((env_id, list(seeds)[:1], env_kwargs))
        for seed in seeds:
            episode = Episode(rgb=np.zeros((3, 8, 8, 3), np.uint8), qpos=np.zeros((3, 16)),
                              actions=np.zeros((3, 16)), seed=seed, success=True)
            yield SimpleNamespace(success=True, episode=episode)

    return rollouts


# --- a submission's cells are the sweep's ------------------------------------------------------
def test_the_default_encoder_submitted_is_the_sweeps_own_row():
    resnet = resolve_encoder("resnet")
    defaults = dict(make_encoder("resnet").options)
    assert submission_row(SMOKE, resnet, {}, defaults) is ROWS["singleframe-dp"]
    # The same options spelt out (in JSON, lists) build the same encoder: the same cell still.
    spelt_out = json.loads(json.dumps(defaults))
    assert submission_row(SMOKE, resnet, spelt_out, spelt_out) is ROWS["singleframe-dp"]
    narrow = {"channels": [8, 8, 8]}
    row = submission_row(SMOKE, resnet, narrow, {**defaults, **narrow})
    assert (row.name, row.policy, row.overrides) == (
        "resnet-dp", "singleframe-dp", {"encoder": "resnet", "encoder_options": narrow})


def test_an_encoder_named_like_a_sweep_row_is_refused():
    gru = SubmittedEncoder("gru", "gru", WrongShape, encoders.encoder_source("resnet"))
    with pytest.raises(UsageError, match="would be the sweep's row 'gru-dp'"):
        submission_row(SMOKE, gru, {}, {})


class StopAtTraining(Exception):
    pass


@pytest.mark.parametrize(("options", "row", "overrides"), [
    ({"channels": [8, 8, 8]}, "resnet-dp",
     {"encoder": "resnet", "encoder_options": {"channels": [8, 8, 8]}}),
    ({}, "singleframe-dp", {}),  # the sweep's row, the very same cell
])
def test_a_submission_trains_in_the_sweep_cache_on_the_sweeps_demos(options, row, overrides,
                                                                   tmp_path, monkeypatch):
    rollouts = []
    monkeypatch.setattr("aem_bench.expert.expert_rollouts", fake_rollouts(rollouts))
    sweep = Sweep(SMOKE, tmp_path / "cache", tmp_path / "results", progress=False)
    task = SMOKE.tasks[0]
    demos = sweep.demos(task)  # recorded by the sweep, as any of its rows would
    recorded = demos.read_bytes()
    trained = []

    def train(policy, demos_path, out_dir, **kwargs):
        trained.append((policy, Path(demos_path), Path(out_dir), kwargs["config_overrides"]))
        raise StopAtTraining

    monkeypatch.setattr("aem_bench.policies.training.train", train)
    with pytest.raises(StopAtTraining):
        submit("resnet", SMOKE, tmp_path / "cache", encoder_options=options, progress=False,
               results_dir=tmp_path / "results")
    [(policy, demos_path, checkpoint, given)] = trained
    assert (policy, given) == ("singleframe-dp", overrides)
    assert checkpoint == tmp_path / "cache" / "ClickBell-v1" / row
    assert (checkpoint / SUBMISSION_FILE).is_file()
    assert demos_path == demos and demos.read_bytes() == recorded
    assert len(rollouts) == 1  # recorded once, by the sweep


def test_a_damaged_cached_demos_file_is_named_and_left_in_place(tmp_path, monkeypatch):
    rollouts = []
    monkeypatch.setattr("aem_bench.expert.expert_rollouts", fake_rollouts(rollouts))
    demos = Sweep(SMOKE, tmp_path / "cache", tmp_path / "results").demos_file(SMOKE.tasks[0])
    demos.parent.mkdir(parents=True)
    demos.write_bytes(b"cut short")
    with pytest.raises(InputError) as refused:
        submit("resnet", SMOKE, tmp_path / "cache", progress=False,
               results_dir=tmp_path / "results")
    message = str(refused.value)
    assert message.startswith(str(demos)) and "not a readable HDF5 file" in message, message
    assert f"move {demos} away to record it again" in message
    assert demos.read_bytes() == b"cut short" and rollouts == []  # left, not recorded over


def test_a_cached_demos_file_of_another_task_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("aem_bench.expert.expert_rollouts", fake_rollouts([]))
    sweep = Sweep(SMOKE, tmp_path / "cache", tmp_path / "results", progress=False)
    other = sweep.demos("AEM/ClickBell-v0")
    demos = sweep.demos_file(SMOKE.tasks[0])
    demos.parent.mkdir(parents=True)
    other.rename(demos)
    with pytest.raises(InputError, match=r"holds AEM/ClickBell-v0 at camera \[64, 64\], not "
                                         r"AEM/ClickBell-v1 at \[64, 64\]"):
        sweep.demos(SMOKE.tasks[0])


def test_a_checkpoint_of_another_submission_is_not_resumed(tmp_path):
    submission = {"encoder_ref": "tiny", "encoder": "tiny", "fingerprint": "a" * 64,
                  "encoder_options": {"channels": 8}, "protocol": SMOKE.to_dict()}
    checkpoint = tmp_path / "tiny_AEM_ClickBell-v0"
    assert claim_checkpoint(checkpoint, submission) is False
    assert claim_checkpoint(checkpoint, submission) is True
    # The same encoder by its import path is the same submission.
    assert claim_checkpoint(checkpoint, {**submission, "encoder_ref": "pkg.mod:Tiny"}) is True
    with pytest.raises(ValueError, match=r"another submission \(it differs in \['fingerprint'\]\)"):
        claim_checkpoint(checkpoint, {**submission, "fingerprint": "b" * 64})


@pytest.mark.parametrize(("content", "says"), [
    (b'{"encoder_ref": "tiny", "enc', "damaged (cut short"),
    (b"\xff\xfe garbage", "damaged (not text"),
    (b"garbage", "damaged (not JSON"),
    (b"[]", "not a JSON object"),
])
def test_a_damaged_submission_file_is_named_with_how_to_recover(content, says, tmp_path):
    checkpoint = tmp_path / "tiny_AEM_ClickBell-v0"
    checkpoint.mkdir()
    (checkpoint / SUBMISSION_FILE).write_bytes(content)
    with pytest.raises(InputError) as refused:
        claim_checkpoint(checkpoint, {"encoder_ref": "tiny", "encoder": "tiny"})
    message = str(refused.value)
    assert message.startswith(str(checkpoint / SUBMISSION_FILE)) and says in message, message
    assert f"move {checkpoint} away" in message
    assert (checkpoint / SUBMISSION_FILE).read_bytes() == content  # left as it was


# --- the example package, installed and submitted --------------------------------------------
@pytest.fixture(scope="module")
def installed_example(tmp_path_factory) -> Path:
    """The example package installed into a directory of its own (pip builds in the source
    tree, so from a copy of it), as a submitter would install theirs."""
    root = tmp_path_factory.mktemp("example")
    shutil.copytree(EXAMPLE, root / "src",
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "--target", str(root / "site"),
                    str(root / "src")], check=True, capture_output=True)
    return root / "site"


def test_installed_reference_resolves_to_its_entry_point(installed_example, monkeypatch):
    monkeypatch.syspath_prepend(str(installed_example))
    submitted = resolve_encoder("aem_bench_tiny_encoder:TinyEncoder")
    assert submitted.name == "tiny"  # its checkpoints name the entry point, not the module
    assert (submitted.source.distribution, submitted.source.version) == (EXAMPLE_DIST, "0.1.0")


def test_installed_example_is_listed(installed_example, monkeypatch, capsys):
    # In this process (importing aem_bench costs ~10 s a process): the entry point is found on
    # sys.path as on PYTHONPATH; the submission below runs the CLI in a process of its own.
    monkeypatch.syspath_prepend(str(installed_example))
    assert main(["encoders", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["tiny"]["distribution"] == EXAMPLE_DIST
    assert rows["tiny"]["class"] == "aem_bench_tiny_encoder:TinyEncoder"
    assert rows["tiny"]["feature_dim"] == 64 and rows["tiny"]["pretrained"] is False
    assert rows["tiny"]["error"] is None and not rows["tiny"]["builtin"]
    assert rows["resnet"]["builtin"]


@pytest.mark.slow
def test_example_is_submitted_and_loads_back(installed_example, tmp_path, monkeypatch):
    """The smoke protocol, end to end, in a fresh process that knows the package only from
    PYTHONPATH (about a minute, a third of it the first rendered frame)."""
    script = Path(sys.executable).parent / "aem-bench"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "aem_bench.cli"]

    def submit_smoke() -> subprocess.CompletedProcess:
        run = subprocess.run(
            [*command, "submit", "--encoder", "tiny", "--protocol", "smoke",
             "--options", '{"channels": 8}', "--cache", "cache", "--results-dir", "results"],
            check=False, cwd=tmp_path, capture_output=True, text=True, timeout=300,
            env={**os.environ, "PYTHONPATH": str(installed_example)})
        assert run.returncode == 0, run.stderr[-3000:]
        return run

    submit_smoke()
    [path] = sorted((tmp_path / "results").glob("*.json"))
    assert path.name == "tiny-dp_ClickBell-v1_smoke.json"  # the sweep's name for the cell
    result = validate_result(json.loads(path.read_text()), source=str(path))
    checkpoint = tmp_path / "cache" / "ClickBell-v1" / "tiny-dp"  # the sweep's cache layout
    assert (checkpoint / "eval_clean.jsonl").is_file()
    weights = (checkpoint / "model.safetensors").read_bytes()

    # The same command again resumes: nothing is trained or evaluated twice.
    again = submit_smoke()
    assert "resuming the submission saved in" in again.stdout + again.stderr
    assert (checkpoint / "model.safetensors").read_bytes() == weights
    assert json.loads(path.read_text())["records"] == result["records"]
    assert (result["encoder"], result["head"], result["task"]) == ("tiny", "dp", SMOKE.tasks[0])
    assert result["policy"] == result["training"]["row"] == "tiny-dp"
    assert result["episodes"] == SMOKE.eval_episodes
    assert result["env_kwargs"]["camera_size"] == [SMOKE.camera, SMOKE.camera]
    submission = result["submission"]
    assert submission["encoder_ref"] == "tiny" and submission["entry_point"] == "tiny"
    assert submission["distribution"] == {"name": EXAMPLE_DIST, "version": "0.1.0"}
    assert submission["protocol"] == SMOKE.to_dict()
    assert submission["encoder_options"] == {"channels": 8, "feature_dim": 64}
    assert len(submission["fingerprint"]) == 64

    # The checkpoint names "tiny"; this process has not registered it (clean_registry), so
    # load_policy finds it through the entry point.
    monkeypatch.syspath_prepend(str(installed_example))
    assert "tiny" not in encoders.ENCODERS
    policy = load_policy(checkpoint)
    assert type(policy.encoder).__name__ == "TinyEncoder"
    assert policy.encoder.fingerprint() == submission["trained_fingerprint"]
