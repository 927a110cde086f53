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
from aem_bench.sim.poses import yaw_of
from aem_bench.tasks._blocks import STACK_CUBE_HALF
from aem_bench.tasks.click_bell import TRAVEL

SEED = 0


def drive_targets(task) -> np.ndarray:
    """The 16-d action that keeps every joint on its drive target (a closing hand keeps
    squeezing: aiming its fingers where they are would let go of what it holds)."""
    return np.concatenate([
        [float(joint.get_drive_target()[0]) for joint in arm.robot.get_active_joints()][:8]
        for arm in task.arms.values()]).astype(np.float32)


def planner(task) -> MotionPlanner:
    plan = MotionPlanner(task)
    plan.command = drive_targets(task).astype(np.float64)
    return plan


def hold(task, steps: int = 5) -> None:
    """Step the physics with every joint kept on its drive target, so that the contacts
    evaluate() reads are those of the state built."""
    targets = drive_targets(task)
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
    plan = planner(task)
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


def row_mirrored(task):
    # The same row read the other way round: same line, same gaps, wrong order.
    centre = np.mean([cube.pose.p[1] for cube in task.cubes])
    for cube in task.cubes:
        move(cube, dy=2 * (centre - cube.pose.p[1]))


def rotation(axis, degrees: float) -> sapien.Pose:
    half = np.deg2rad(degrees) / 2
    return sapien.Pose(q=[np.cos(half), *(np.sin(half) * np.asarray(axis, dtype=float))])


def tilt_in_place(entity, degrees: float) -> None:
    pose = entity.pose
    turn = rotation((1, 0, 0), degrees)
    entity.set_pose(sapien.Pose(pose.p, (turn * sapien.Pose(q=pose.q)).q))


def turn_in_place(entity, degrees: float) -> None:
    pose = entity.pose
    turn = rotation((0, 0, 1), degrees)
    entity.set_pose(sapien.Pose(pose.p, (turn * sapien.Pose(q=pose.q)).q))


def nearest_side(task, point) -> str:
    return min(task.arms, key=lambda side: np.linalg.norm(task.arms[side].tcp_pose.p - point))


def block_grasped_by_other_hand(task):
    # The turning hand's grasp fails "gripper open"; the other hand's does not. The block is
    # slid (turned as it was) to the table's centre, where the other hand reaches it.
    other = "right" if task.side == "left" else "left"
    move(task.block, to=[0.0, 0.0, task.block.pose.p[2]])
    hold(task)
    grasp(task, other, task.block.pose.p, yaw_of(task.block.pose))


def put_back_on_another_mat(task):
    other = next(k for k in range(len(task.mats)) if k != task.origin)
    move(task.cube, to=[*task.mats[other].pose.p[:2], task.cube.pose.p[2]])


def hand_over_the_bell(task):
    # Fingertips just under the clear height over the cap, the cap not pushed.
    from aem_bench.tasks._articulations import FINGERTIP_BELOW_TCP
    from aem_bench.tasks.click_bell import CLEAR_HEIGHT

    top = task._cap_top_at_rest + [0.0, 0.0, FINGERTIP_BELOW_TCP + CLEAR_HEIGHT / 2]
    plan = planner(task)
    side = nearest_side(task, top)
    for action in plan.move(30, **{side: plan.top_down(side, top, 0.0)}):
        task.step(action)
    hold(task)


def lid_back_over_its_cube(task):
    lid = task.lids[0]
    cube = min(task.cubes.values(), key=lambda c: np.linalg.norm(c.pose.p[:2] - lid.pose.p[:2]))
    move(lid, to=[*cube.pose.p[:2], lid.pose.p[2]])


def pot_before_the_lift(task):
    # The expert's own state with both hands on the handles, before it lifts.
    task.reset(seed=SEED)
    for action in task.expert():
        task.step(action)
        info = task.evaluate()
        if info["left_grasping"] and info["right_grasping"]:
            break
    hold(task)


def pot_raised_on_one_side(task):
    # Both hands turn the pot 20 degrees about its centre, each keeping its grip.
    pot = task.pot.pose
    tilted = sapien.Pose(pot.p, (rotation((1, 0, 0), 20.0)
                                 * sapien.Pose(q=pot.q)).q)
    plan = planner(task)
    goals = {side: tilted * pot.inv() * task.arms[side].tcp_pose for side in task.arms}
    for action in plan.move(20, **goals):
        task.step(action)
    hold(task)


def pot_held_by_the_left_hand_only(task):
    # One hand cannot hold the pot level for long, so this is the first step after the right
    # hand let go, the pot raised higher first so that it is still above the lift goal.
    plan = planner(task)
    poses = {side: task.arms[side].tcp_pose for side in task.arms}
    for action in plan.move(20, **{side: sapien.Pose(pose.p + [0.0, 0.0, 0.05], pose.q)
                                   for side, pose in poses.items()}):
        task.step(action)
    right = task.arms["right"]
    opened = right.qpos.copy()
    opened[-1] = right.high[-1]
    right.reset(opened)
    hold(task, 1)


STACKS = ["AEM/StackBlocksTwo-v0", "AEM/StackBlocksThree-v0"]
ROWS = ["AEM/BlocksRankingRGB-v0", "AEM/BlocksRankingSize-v0"]
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
    **{(task, "ordered"): (row_mirrored, {"ordered": False, "aligned": True, "adjacent": True,
                                          "resting": True, "grippers_open": True,
                                          "cube_grasped": False})
       for task in ROWS},
    **{(task, "aligned"): (lambda task: move(task.cubes[1], dx=0.03),
                           {"ordered": True, "aligned": False, "adjacent": True,
                            "resting": True, "grippers_open": True})
       for task in ROWS},
    **{(task, "adjacent"): (lambda task: move(task.cubes[-1], dy=-0.05),
                            {"ordered": True, "aligned": True, "adjacent": False,
                             "resting": True, "grippers_open": True})
       for task in ROWS},
    **{(task, "resting"): (lambda task: move(task.cubes[1], dz=0.02),
                           {"ordered": True, "aligned": True, "adjacent": True,
                            "resting": False, "grippers_open": True})
       for task in ROWS},
    **{(task, "grippers open"): (lambda task: close_gripper(task, "left"),
                                 {"ordered": True, "aligned": True, "adjacent": True,
                                  "resting": True, "grippers_open": False,
                                  "cube_grasped": False})
       for task in ROWS},
    ("AEM/SwapBlocks-v0", "swapped"): (
        lambda task: setattr(task, "moves_done", task.moves_done - 1),  # one move short
        {"swapped": False, "grippers_open": True, "cube_grasped": False}),
    ("AEM/SwapBlocks-v0", "grippers open"): (
        lambda task: close_gripper(task, "right"),
        {"swapped": True, "grippers_open": False, "cube_grasped": False}),
    ("AEM/PutBackBlock-v0", "pressed"): (
        lambda task: setattr(task, "pressed", False),  # the press never registered
        {"pressed": False, "on_original_mat": True, "cube_grasped": False,
         "grippers_open": True}),
    ("AEM/PutBackBlock-v0", "original mat"): (
        put_back_on_another_mat,
        {"pressed": True, "on_original_mat": False, "cube_grasped": False,
         "grippers_open": True}),
    ("AEM/PutBackBlock-v0", "grippers open"): (
        lambda task: close_gripper(task, "left"),
        {"pressed": True, "on_original_mat": True, "cube_grasped": False,
         "grippers_open": False}),
    ("AEM/RotateBlock-v0", "aligned"): (
        lambda task: turn_in_place(task.block, 40.0),
        {"face_aligned": False, "block_resting": True, "block_grasped": False,
         "gripper_open": True}),
    ("AEM/RotateBlock-v0", "resting"): (
        lambda task: move(task.block, dz=0.02),
        {"face_aligned": True, "block_resting": False, "block_grasped": False,
         "gripper_open": True}),
    ("AEM/RotateBlock-v0", "not held"): (
        block_grasped_by_other_hand,
        {"face_aligned": True, "block_resting": True, "block_grasped": True,
         "gripper_open": True}),
    ("AEM/RotateBlock-v0", "gripper open"): (
        lambda task: close_gripper(task, task.side),
        {"face_aligned": True, "block_resting": True, "block_grasped": False,
         "gripper_open": False}),
    ("AEM/PlaceContainerPlate-v0", "upright"): (
        lambda task: tilt_in_place(task.cup, 30.0),
        {"cup_upright": False, "cup_on_plate_xy": True, "cup_resting": True,
         "released": True}),
    ("AEM/PlaceContainerPlate-v0", "on plate"): (
        lambda task: move(task.plate, dx=0.15),  # the plate slides away, the cup stays put
        {"cup_upright": True, "cup_on_plate_xy": False, "cup_resting": True,
         "released": True}),
    ("AEM/PlaceContainerPlate-v0", "resting"): (
        lambda task: move(task.cup, dz=0.03),
        {"cup_upright": True, "cup_on_plate_xy": True, "cup_resting": False,
         "released": True}),
    ("AEM/PlaceContainerPlate-v0", "released"): (
        lambda task: close_gripper(task, nearest_side(task, task.cup.pose.p)),
        {"cup_upright": True, "cup_on_plate_xy": True, "cup_resting": True,
         "cup_grasped": False, "released": False}),
    ("AEM/PlaceObjectBasket-v0", "inside"): (
        lambda task: move(task.basket, dx=0.2),
        {"can_inside_xy": False, "can_below_rim": True, "released": True}),
    ("AEM/PlaceObjectBasket-v0", "below rim"): (
        lambda task: move(task.can, dz=0.08),
        {"can_inside_xy": True, "can_below_rim": False, "released": True}),
    ("AEM/PlaceObjectBasket-v0", "released"): (
        lambda task: close_gripper(task, nearest_side(task, task.can.pose.p)),
        {"can_inside_xy": True, "can_below_rim": True, "can_grasped": False,
         "released": False}),
    ("AEM/LiftPot-v0", "lifted"): (
        pot_before_the_lift,
        {"pot_lifted": False, "pot_level": True, "left_grasping": True,
         "right_grasping": True}),
    ("AEM/LiftPot-v0", "level"): (
        pot_raised_on_one_side,
        {"pot_lifted": True, "pot_level": False, "left_grasping": True,
         "right_grasping": True}),
    ("AEM/LiftPot-v0", "both hands"): (
        pot_held_by_the_left_hand_only,
        {"pot_lifted": True, "pot_level": True, "left_grasping": True,
         "right_grasping": False}),
    ("AEM/ClickBell-v0", "was pressed"): (
        lambda task: task.reset(seed=SEED),  # nothing happened yet
        {"was_pressed": False, "cap_released": True, "hands_clear": True}),
    ("AEM/ClickBell-v0", "released"): (
        lambda task: task.bell.set_qpos(np.array([TRAVEL])),  # the cap held down
        {"was_pressed": True, "cap_released": False, "hands_clear": True}),
    ("AEM/ClickBell-v0", "hands clear"): (
        hand_over_the_bell,
        {"was_pressed": True, "cap_released": True, "hands_clear": False}),
    ("AEM/CoverBlocks-v0", "all off"): (
        lambda task: task.uncovered.pop(),  # the last lid's removal not yet seen
        {"lids_off": 2, "fail": False, "lids_clear": True, "grippers_open": True}),
    ("AEM/CoverBlocks-v0", "lids clear"): (
        lid_back_over_its_cube,
        {"lids_off": 3, "fail": False, "lids_clear": False, "grippers_open": True}),
    ("AEM/CoverBlocks-v0", "grippers open"): (
        lambda task: close_gripper(task, "left"),
        {"lids_off": 3, "fail": False, "lids_clear": True, "grippers_open": False}),
    ("AEM/PressButtonCount-v0", "done pressed"): (
        lambda task: setattr(task, "done_pressed", False),  # the count made, done not pressed
        {"done_pressed": False, "count_reached": True}),
    ("AEM/PressButtonCount-v0", "right count"): (
        lambda task: setattr(task.count_button, "presses", task.count_button.presses + 1),
        {"done_pressed": True, "count_reached": True}),
    ("AEM/SeqOfColors-v0", "all pressed"): (
        lambda task: setattr(task, "pressed", task.pressed - 1),  # one button short
        {"fail": False}),
    ("AEM/SeqOfColors-v0", "no wrong press"): (
        lambda task: setattr(task, "wrong_press", True),
        {"presses_in_order": 3, "fail": True}),
    ("AEM/HandoverBlock-v0", "on pad"): (
        lambda task: move(task.pad, dx=0.2),  # the pad slides away, the bar stays put
        {"bar_on_pad_xy": False, "bar_resting": True, "right_gripper_open": True}),
    ("AEM/HandoverBlock-v0", "resting"): (
        lambda task: move(task.bar, dz=0.02),
        {"bar_on_pad_xy": True, "bar_resting": False, "right_gripper_open": True}),
    ("AEM/HandoverBlock-v0", "right gripper open"): (
        lambda task: close_gripper(task, "right"),
        {"bar_on_pad_xy": True, "bar_resting": True, "right_gripper_open": False}),
}

# Clauses implied by another clause of the same check: no state breaks them alone.
REDUNDANT = {
    (task, "nothing held"): (
        "every gripper must be open, and an open hand's pads stand at least 7.2 cm apart "
        "(90% of 8 cm), wider than a flat 5 cm cube across any horizontal line (7.07 cm at "
        "the diagonal): a stacked cube cannot be pinched by an open hand")
    for task in STACKS
} | {
    (task, "nothing held"): "as for the stacks: all cubes are 5 cm or smaller"
    for task in (*ROWS, "AEM/SwapBlocks-v0")
} | {
    ("AEM/PutBackBlock-v0", "let go"): (
        "'let go' is 'not held and on some mat': on the original mat is required apart, and a "
        "5 cm cube cannot be held by the open hands the check also requires"),
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


@pytest.mark.parametrize("task_id", [*STACKS, *ROWS, "AEM/SwapBlocks-v0",
                                     "AEM/PutBackBlock-v0"])
def test_no_cube_is_wide_enough_for_an_open_hand(env_of, task_id):
    # The geometry REDUNDANT relies on, read from the built cubes: a flat cube's widest
    # horizontal line (its face diagonal) is narrower than an open hand's smallest gap.
    from aem_bench.sim.panda import GRIPPER_OPEN, GRIPPER_OPEN_FRACTION

    task = env_of(task_id).unwrapped
    task.reset(seed=SEED)
    bodies = getattr(task, "cubes", None) or [getattr(task, name) for name in ("cube", "red",
                                                                                "blue")
                                              if hasattr(task, name)]
    assert bodies
    for body in bodies:
        shape = body.find_component_by_type(sapien.physx.PhysxRigidDynamicComponent)
        half = shape.collision_shapes[0].half_size
        assert np.allclose(half, half[0]), "a cube"
        assert 2 * half[0] * np.sqrt(2) < 2 * GRIPPER_OPEN_FRACTION * GRIPPER_OPEN
