"""The body-leak check: a linear probe on the joint state of expert episodes, for the fact."""

import pytest

from aem_bench.leaks import body_leak, leak_table


@pytest.fixture(scope="module")
def put_back_block():
    return {version: body_leak(f"AEM/PutBackBlock-{version}", episodes=24)
            for version in ("v0", "v1")}


def at(result, moment):
    return next(entry for entry in result["moments"] if entry["moment"] == moment)


def test_put_back_block_v0_carries_the_mat_in_its_joints(put_back_block):
    """v0's arms reach the decision with elbows that depend on the starting mat."""
    v0 = put_back_block["v0"]
    assert v0["episodes"] == 24 and v0["fact_values"] == 4
    assert at(v0, "decision")["accuracy"] >= 0.9
    assert at(v0, "decision")["body_carries_fact"] and v0["body_carries_fact"]


def test_put_back_block_v1_returns_the_arms_before_the_decision(put_back_block):
    """v1 brings the arms back to their start before the decision: the probe reads far less
    there than on v0. At the cue's end the arm still holds the cube over its mat, in both."""
    v0, v1 = put_back_block["v0"], put_back_block["v1"]
    assert at(v1, "decision")["accuracy"] <= at(v0, "decision")["accuracy"] - 0.2
    assert at(v1, "cue_hidden")["accuracy"] >= 0.9
    assert at(v1, "decision")["step_median"] > at(v1, "cue_hidden")["step_median"]


def test_the_table_has_a_row_per_task(put_back_block):
    table = leak_table(list(put_back_block.values()))
    assert "AEM/PutBackBlock-v0" in table and "AEM/PutBackBlock-v1" in table


@pytest.mark.parametrize(("env_id", "kwargs", "message"), [
    ("AEM/ClickBell-v0", {}, "no hidden fact"),
    ("AEM/ShellGame-v0", {"episodes": 9}, "at least 2 \\* folds"),
    ("AEM/ShellGame-v0", {"folds": 1, "episodes": 10}, "folds must be at least 2"),
])
def test_bad_arguments_are_refused(env_id, kwargs, message):
    with pytest.raises(ValueError, match=message):
        body_leak(env_id, **kwargs)
