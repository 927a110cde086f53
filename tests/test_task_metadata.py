"""The task metadata as data: ``tasks/registry.json`` is what the task modules declare, and what
only reads metadata (``import aem_bench``, the leaderboard) never imports the simulator.

The import checks run in a fresh interpreter: in this one, other tests have imported SAPIEN and
every task module already.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from aem_bench.cli import main
from aem_bench.registration import TaskSpec, metadata_text, read_metadata
from aem_bench.tasks import METADATA_FILE, suite_metadata

ROOT = Path(__file__).resolve().parent.parent
SIMULATORS = ("sapien", "mani_skill")


def run_python(code: str, cwd: Path = ROOT) -> str:
    """``code`` in a fresh interpreter; its stdout (it fails the test if the code raises)."""
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_committed_metadata_is_what_the_task_modules_declare():
    declared = metadata_text(suite_metadata().values())
    stale = f"{METADATA_FILE} is out of date: run `aem-bench tasks --write-metadata`"
    assert json.loads(METADATA_FILE.read_text()) == json.loads(declared), stale
    assert METADATA_FILE.read_text() == declared, stale


def test_write_metadata_writes_the_committed_file(tmp_path, capsys):
    out = tmp_path / "registry.json"
    assert main(["tasks", "--write-metadata", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out}\n"
    assert out.read_text() == METADATA_FILE.read_text()


def test_import_registers_every_task_without_a_simulator():
    found = json.loads(run_python(f"""
import json, sys
import gymnasium as gym
import aem_bench
from aem_bench.registration import TASKS
print(json.dumps({{"ids": sorted(TASKS),
                  "in_gymnasium": sorted(i for i in TASKS if i in gym.registry),
                  "imported": sorted(m for m in sys.modules if m.split(".")[0] in {SIMULATORS}
                                     or m.startswith("aem_bench.tasks."))}}))
"""))
    assert found["ids"] == sorted(suite_metadata()) and found["in_gymnasium"] == found["ids"]
    assert found["imported"] == ["aem_bench.tasks.maniskill"]  # its ids only, not ManiSkill3


def test_rendering_the_leaderboard_starts_no_simulator(tmp_path):
    """`aem-bench leaderboard` on the committed results: tables, page and plots."""
    out = tmp_path / "README.md"
    imported = json.loads(run_python(f"""
import json, sys
from aem_bench.cli import main
assert main(["leaderboard", "--results", "leaderboard/results", "--out", {str(out)!r}]) == 0
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {SIMULATORS})))
""").splitlines()[-1])  # after the command's own lines
    assert imported == []
    assert (tmp_path / "index.html").is_file() and list((tmp_path / "plots").glob("*.png"))
    assert "HandoverBlock-v0" in out.read_text()


def test_a_declaration_that_differs_from_the_metadata_warns_and_wins():
    """Metadata gone stale (here: edited in memory) is noticed when the task's module loads."""
    found = json.loads(run_python("""
import dataclasses, json, warnings
import gymnasium as gym
import aem_bench
from aem_bench.registration import TASKS, register
register(dataclasses.replace(TASKS["AEM/HandoverBlock-v0"], max_episode_steps=1))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import aem_bench.tasks.handover_block
print(json.dumps({"warnings": [str(w.message) for w in caught],
                  "steps": TASKS["AEM/HandoverBlock-v0"].max_episode_steps,
                  "gymnasium": gym.spec("AEM/HandoverBlock-v0").max_episode_steps}))
"""))
    assert len(found["warnings"]) == 1, found
    assert found["warnings"][0].startswith("AEM/HandoverBlock-v0: the declaration differs")
    assert "aem-bench tasks --write-metadata" in found["warnings"][0]
    assert found["steps"] == found["gymnasium"] == 400


@pytest.mark.parametrize(("text", "says"), [
    ("{", "not a task metadata file"),
    ('{"tasks": {"AEM/X-v0": {"env_id": "AEM/X-v0", "colour": "red"}}}', "unknown fields"),
    ('{"tasks": {"AEM/X-v0": {"env_id": "AEM/X-v0"}}}', "not a task metadata file"),
])
def test_a_damaged_metadata_file_is_named(tmp_path, text, says):
    path = tmp_path / "registry.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=says) as raised:
        read_metadata(path)
    message = str(raised.value)
    assert str(path) in message and "aem-bench tasks --write-metadata" in message


def test_a_missing_metadata_file_says_how_to_write_it(tmp_path):
    with pytest.raises(ValueError, match="no task metadata .*aem-bench tasks --write-metadata"):
        read_metadata(tmp_path / "registry.json")


def test_an_entry_under_another_id_is_refused(tmp_path):
    spec = next(iter(suite_metadata().values()))
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"tasks": {"AEM/Other-v0": spec.to_dict()}}))
    with pytest.raises(ValueError, match="'AEM/Other-v0' holds the spec of"):
        read_metadata(path)
    assert TaskSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
