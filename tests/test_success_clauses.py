"""Every clause of every task's success check guarded by a near miss.

For each (task, clause): the scripted expert solves the task in state mode, then one perturbation
(close a gripper, move or lift an object, grasp something) breaks that clause alone. The test
asserts that success held before, that the other clauses' flags still hold after, and that
success is now False, so removing the clause from ``evaluate()`` fails exactly this test
(``make mutate-success`` removes each clause in turn and lists the survivors).

A clause left without a case is implied by another one; the reason is in ``REDUNDANT`` below.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import sapien

from aem_bench.expert import run_expert
from aem_bench.sim.motion import MotionPlanner
from aem_bench.tasks._blocks import STACK_CUBE_HALF

SEED = 0


def hold(task, steps: int = 5) -> None:
    """Step the physics with every joint kept on its drive target (a closed hand keeps
    squeezing), so that the contacts evaluate() reads are those of the state built."""
    targets = np.concatenate([
        [float(joint.get_drive_target()[0]) for joint in arm.robot.get_active_joints()][:8]
        for arm in task.arms.values()]).astype(np.float32)
    for _ in range(steps):
        task.step(targets)


def close_gripper(task, side: str) -> None:
    """Shut one hand's fingers where the arm is (nothing between them)."""
    arm = task.arms[side]
    closed = arm.qpos.copy()
    closed[-1] = arm.low[-1]
    arm.reset(closed)


def move(entity, dx=0.0, dy=0.0, dz=0.0, to=None) -> None:
    """Teleport a body by an offset (or to ``to``), keeping its orientation, and still it."""
    pose = entity.pose
    p = np.array(to, dtype=float) if to is not None else pose.p + [dx, dy, dz]
    entity.set_pose(sapien.Pose(p, pose.q))


def grasp(task, side: str, point, yaw: float, hover: float = 0.10,
          finger: float = 0.03) -> None:
    """Bring ``side``'s hand top-down onto ``point`` with the fingers closing across ``yaw``,
    close it, and let the physics settle."""
    plan = MotionPlanner(task)
    quat = plan.top_down(side, point, yaw).q
    actions = [*plan.move(25, grippers={side: finger},
                          **{side: sapien.Pose(np.asarray(point) + [0, 0, hover], quat)}),
               *plan.move(15, **{side: sapien.Pose(point, quat)}),
               *plan.close(side)]
    for action in actions:
        task.step(action)
    hold(task)


# --- perturbations, one per (task, clause) -----------------------------------------------------

def drawer_pushed_back(task):
    task.cabinet.set_qpos(np.array([0.05]))


def drawer_grasped_by_right_hand(task):
    # The left hand's grasp already fails "left gripper open"; the right hand's does not. The
    # right hand cannot reach the handle top-down once the drawer is out, so it pinches the
    # drawer's side wall (same link: "held" is any hand holding the drawer).
    from aem_bench.tasks.open_drawer import CLEARANCE, WALL, WIDTH

    wall_x = -(WIDTH / 2 - WALL - CLEARANCE - WALL / 2)
    point = (task.drawer_link.entity_pose * sapien.Pose([wall_x, -0.05, 0.085])).p
    grasp(task, "right", point, task.cabinet_yaw)


def top_cube_beside_the_stack(task):
    top = task.cubes[-1]
    move(top, to=[top.pose.p[0], top.pose.p[1] - 0.12, STACK_CUBE_HALF])  # on the table


def answer_back_on_the_table(task):
    answer = task.choices[task.answer]
    move(answer, dz=-float(task.lifts()[task.answer]))


def wrong_one_lifted_too(task):
    wrong = next(i for i in range(len(task.choices)) if i != task.answer)
    move(task.choices[wrong], dz=0.03 - float(task.lifts()[wrong]))


STACKS = ["AEM/StackBlocksTwo-v0", "AEM/StackBlocksThree-v0"]
LIFT_THE_REMEMBERED = ["AEM/RememberColor3-v0", "AEM/RememberColor5-v0",
                       "AEM/RememberColor9-v0", "AEM/ShellGame-v0", "AEM/ObserveAndPickup-v0"]

# (task, clause): (perturbation, the flags of evaluate() after it). The clause's own flag is
# among them (False), so the case cannot pass by breaking something else.
CASES = {
    ("AEM/OpenDrawer-v0", "drawer open"): (
        drawer_pushed_back,
        {"drawer_open": False, "handle_grasped": False, "left_gripper_open": True}),
    ("AEM/OpenDrawer-v0", "handle released"): (
        drawer_grasped_by_right_hand,
        {"drawer_open": True, "handle_grasped": True, "left_gripper_open": True}),
    ("AEM/OpenDrawer-v0", "left gripper open"): (
        lambda task: close_gripper(task, "left"),
        {"drawer_open": True, "handle_grasped": False, "left_gripper_open": False}),
    **{(task, "stacked"): (top_cube_beside_the_stack,
                           {"grippers_open": True, "cube_grasped": False})
       for task in STACKS},
    **{(task, "grippers open"): (lambda task: close_gripper(task, "left"),
                                 {"grippers_open": False, "cube_grasped": False})
       for task in STACKS},
    **{(task, "answer lifted"): (answer_back_on_the_table,
                                 {"answer_lifted": False, "wrong_lifted": False})
       for task in LIFT_THE_REMEMBERED},
    **{(task, "no wrong one lifted"): (wrong_one_lifted_too,
                                       {"answer_lifted": True, "wrong_lifted": True})
       for task in LIFT_THE_REMEMBERED},
}

# Clauses implied by another clause of the same check: no state breaks them alone.
REDUNDANT = {
    (task, "nothing held"): (
        "every gripper must be open, and an open hand's pads stand at least 7.2 cm apart "
        "(90% of 8 cm), wider than a flat 5 cm cube across any horizontal line (7.07 cm at "
        "the diagonal): a stacked cube cannot be pinched by an open hand")
    for task in STACKS
}


@pytest.fixture(scope="module")
def env_of():
    made = {}

    def make(task_id):
        if task_id not in made:
            made[task_id] = gym.make(task_id, obs_mode="state")
        return made[task_id]

    yield make
    for env in made.values():
        env.close()


@pytest.mark.parametrize("task_id, clause", sorted(CASES), ids=lambda v: v.split("/")[-1])
def test_near_miss_fails_the_success_check(env_of, task_id, clause):
    perturb, flags = CASES[task_id, clause]
    env = env_of(task_id)
    result = run_expert(env, SEED)
    assert result.success, result.failure
    task = env.unwrapped
    assert task.evaluate()["success"]
    perturb(task)
    info = task.evaluate()
    assert {key: info[key] for key in flags} == flags, "the near miss must break only its clause"
    assert not info["success"]


def test_the_stacked_cubes_are_too_narrow_for_an_open_hand():
    # The geometry REDUNDANT relies on, from the constants the checks use.
    from aem_bench.sim.panda import GRIPPER_OPEN, GRIPPER_OPEN_FRACTION

    assert 2 * STACK_CUBE_HALF * np.sqrt(2) < 2 * GRIPPER_OPEN_FRACTION * GRIPPER_OPEN
