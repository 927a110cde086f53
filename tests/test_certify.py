"""The memory certificate pipeline end to end on a tiny budget (the numbers mean nothing)."""

import json

import pytest

from aem_bench.certify import CertificateBudget, certify

TINY = CertificateBudget(demos=2, train_steps=2, eval_episodes=2, camera=32, batch_size=8,
                         expert_episodes=2)


@pytest.mark.slow
def test_certificate_of_a_memory_task(tmp_path):
    record = tmp_path / "certificates.json"
    entry = certify("AEM/ShellGame-v0", tmp_path / "work", TINY, progress=False, record=record)
    assert json.loads(record.read_text())["AEM/ShellGame-v0"] == entry
    assert json.loads((tmp_path / "work" / "certificate.json").read_text()) == entry
    assert entry["memory"] == "spatial" and entry["chance"] == pytest.approx(1 / 3)
    assert "ball" in entry["memory_fact"] or "spot" in entry["memory_fact"]
    assert entry["cue_hidden_at"]["min"] > 0
    assert entry["expert"] == {"successes": 2, "episodes": 2}
    for name in ("with_oracle", "without_oracle"):
        assert entry[name]["episodes"] == 2 and 0 <= entry[name]["rate"] <= 1
    # Both policies faced the same expert-solvable seeds.
    assert entry["with_oracle"]["seeds"] == entry["without_oracle"]["seeds"]


def test_certify_refuses_a_markovian_task(tmp_path):
    with pytest.raises(ValueError, match="not a memory task"):
        certify("AEM/HandoverBlock-v0", tmp_path, TINY, progress=False)
