"""AEM/OpenDrawer-v1 and AEM/LiftPot-v1: their layouts vary more than v0's, and the expert copes.

v0's layouts barely vary: the expert's actions of one seed, replayed blind on another, succeed on
20/50 (OpenDrawer-v0) and 19/50 (LiftPot-v0) seeds (README, Blind replay). Each v1 widens the
place and turn of the cabinet or the pot; these tests fail if a v1's randomisation is narrowed
back to v0's, or widened past what the expert reaches.
"""

import gymnasium as gym
import numpy as np
import pytest

from aem_bench.expert import run_expert
from aem_bench.sim.poses import yaw_of

SEEDS = range(20)


def _cabinet(env):
    task = env.unwrapped
    return (*task.shell_link.entity_pose.p[:2], task.cabinet_yaw)


def _pot(env):
    pose = env.unwrapped.pot.pose
    return (*pose.p[:2], yaw_of(pose))


# Per task: how to read its layout (x, y, yaw) after a reset, and v0's widest possible spread of
# each over any seeds (the width of v0's uniform ranges): OpenDrawer-v0 x +-8 cm, y +-2 cm, yaw
# +-10 degrees; LiftPot-v0 x and y +-3 cm, yaw +-0.2 rad.
V1_TASKS = {
    "AEM/OpenDrawer-v1": (_cabinet, (0.16, 0.04, np.deg2rad(20.0))),
    "AEM/LiftPot-v1": (_pot, (0.06, 0.06, 0.4)),
}


@pytest.fixture(scope="module", params=sorted(V1_TASKS))
def layouts(request):
    """The task id, its environment and its layouts (x, y, yaw) on ``SEEDS``."""
    env = gym.make(request.param, obs_mode="state")
    read, _ = V1_TASKS[request.param]
    rows = []
    for seed in SEEDS:
        env.reset(seed=seed)
        rows.append(read(env))
    yield request.param, env, np.array(rows)
    env.close()


def test_the_layout_varies_more_than_v0s(layouts):
    """Over 20 seeds, y and yaw (which a blind motion cannot absorb) spread at least 1.5 times
    as far as v0's ranges allow, and x no less."""
    task, _, rows = layouts
    spread = rows.max(axis=0) - rows.min(axis=0)
    v0_widest = np.array(V1_TASKS[task][1])
    assert spread[0] > v0_widest[0], (task, "x", spread, v0_widest)
    assert (spread[1:] > 1.5 * v0_widest[1:]).all(), (task, "y/yaw", spread, v0_widest)


def test_the_expert_reaches_the_extremes(layouts):
    """The expert solves the seeds whose layouts lie furthest out: the widest x, y and yaw."""
    task, env, rows = layouts
    extremes = sorted({int(np.abs(rows[:, k]).argmax()) for k in range(3)})
    for index in extremes:
        result = run_expert(env, SEEDS[index])
        assert result.success, (task, SEEDS[index], rows[index], result.failure)
