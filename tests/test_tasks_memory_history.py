"""Memory tasks that depend on the episode's history: PutBackBlock, SwapBlocks, CoverBlocks,
PressButtonCount. Success and failure states, the oracle, hiding the cue, the experts."""

import gymnasium as gym
import numpy as np
import pytest
import sapien

from aem_bench.expert import run_expert
from aem_bench.sim.panda import ARM_DOF, HOME_QPOS
from aem_bench.tasks import (
    _memory_history,
    cover_blocks,
    press_button_count,
    put_back_block,
    swap_blocks,
)

TASKS = ("AEM/PutBackBlock-v0", "AEM/PutBackBlock-v1", "AEM/SwapBlocks-v0", "AEM/SwapBlocks-v1",
         "AEM/CoverBlocks-v0", "AEM/PressButtonCount-v0")


@pytest.fixture(scope="module")
def oracle_envs():
    # Kept open together: the renderer's first picture costs seconds, and a closed scene's
    # successor pays it again.
    made = {task: gym.make(task, obs_mode="rgb+oracle") for task in TASKS}
    yield made
    for env in made.values():
        env.close()


def hold(env):
    """Step once with the arms holding still; returns terminated and info."""
    _, _, terminated, _, info = env.step(env.unwrapped.qpos.astype(np.float32))
    return terminated, info


def rest_cube(env, cube, xy, half):
    env.unwrapped.set_actor_pose(cube, sapien.Pose([*xy, half]))


def press(button, after_step):
    """A full press of ``button``: cap down, then up, each followed by the task's check."""
    button.articulation.set_qpos([_memory_history.BUTTON_TRAVEL])
    after_step()
    button.articulation.set_qpos([0.0])
    after_step()


@pytest.mark.parametrize("task", TASKS)
def test_oracle_observation(oracle_envs, task):
    env = oracle_envs[task]
    obs, _ = env.reset(seed=0)
    assert "oracle" in obs and obs["oracle"].shape == (env.unwrapped.oracle_size,)
    assert env.observation_space.contains(obs)
    assert np.array_equal(obs["oracle"], env.unwrapped.oracle())
    assert env.unwrapped.cue_hidden_at is None
    assert env.unwrapped.memory_fact


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("seed", [0, 1])
def test_expert_solves(envs, task, seed):
    result = run_expert(envs[task], seed)
    assert result.success, result.failure
    assert result.steps < gym.spec(task).max_episode_steps
    assert envs[task].unwrapped.cue_hidden_at is not None


# --- PutBackBlock ------------------------------------------------------------------------------
def test_put_back_block(envs):
    env = envs["AEM/PutBackBlock-v0"]
    env.reset(seed=0)
    u = env.unwrapped
    half = put_back_block.CUBE_HALF
    assert np.array_equal(u.oracle()[:4], np.eye(4)[u.origin])
    # A press while the cube still stands on its mat does not count; it is back home unpressed.
    press(u.button, u._after_step)
    assert not u.pressed and not u.evaluate()["success"]
    # On the pad: the mat is empty (the cue is gone), and a press counts.
    rest_cube(env, u.cube, u.pad.pose.p[:2], half)
    hold(env)
    assert u.cue_hidden_at == 1 and u.was_centred
    press(u.button, u._after_step)
    assert u.pressed and tuple(u.oracle()[4:]) == (1.0, 1.0)
    # Back on its own mat: success.
    rest_cube(env, u.cube, u._mat_xy(u.origin), half)
    assert u.evaluate()["success"]
    # On another mat: fail, and the episode ends.
    wrong = (u.origin + 1) % 4
    rest_cube(env, u.cube, u._mat_xy(wrong) + [0.01, -0.01], half)
    terminated, info = hold(env)
    assert info["fail"] and not info["success"] and terminated


# --- SwapBlocks --------------------------------------------------------------------------------
def joints_at_decision(env, seed: int) -> tuple[int, np.ndarray]:
    """(the starting mat, the joint state at the decision step) of one expert episode."""
    task = env.unwrapped
    env.reset(seed=seed)
    for action in task.expert():
        env.step(action)
        if task.decision_at is not None:
            return task.origin, task.qpos.copy()
    raise AssertionError(f"seed {seed}: the episode ended without a decision step")


@pytest.mark.parametrize(("version", "joints_tell_the_mat"), [("v0", True), ("v1", False)])
def test_put_back_block_joints_at_the_decision(version, joints_tell_the_mat):
    """v0's arms reach the decision in a configuration that depends on the starting mat; v1's
    are back at their start, the same for every mat, so only a memory tells the mat."""
    env = gym.make(f"AEM/PutBackBlock-{version}", obs_mode="state")
    try:
        seen = dict(joints_at_decision(env, seed) for seed in range(12))
    finally:
        env.close()
    assert len(seen) >= 3  # several mats among the seeds
    spread = np.ptp(np.stack(list(seen.values())), axis=0).max()
    assert (spread > 0.05) == joints_tell_the_mat, spread


def joints_at_move_starts(env, seed: int) -> tuple[list[int], np.ndarray, dict]:
    """One expert episode: (the moves done, the joint state at each move's start, and the task's
    marks: decision_at, cue_hidden_at, the move starts' steps)."""
    task = env.unwrapped
    trace = []  # trace[k]: the joints after k steps, the indexing of the move starts
    result = run_expert(env, seed, on_step=lambda _: trace.append(task.qpos.copy()))
    assert result.success, result.failure
    steps, moves = zip(*task.pooled_probe_rows())
    marks = {"decision_at": task.decision_at, "cue_hidden_at": task.cue_hidden_at,
             "steps": steps}
    return list(moves), np.stack([trace[step] for step in steps]), marks


def off_start(qpos: np.ndarray) -> np.ndarray:
    """Each row's largest distance of an arm joint (both arms) from its start (rad)."""
    arms = np.concatenate([qpos[..., :ARM_DOF], qpos[..., 8:8 + ARM_DOF]], axis=-1)
    return np.abs(arms - np.tile(HOME_QPOS, 2)).max(axis=-1)


@pytest.mark.parametrize("version", ["v0", "v1"])
def test_swap_blocks_joints_at_each_move_start(envs, version):
    """v1's arm begins every move at rest at its starting joints (each within ARMS_BACK, 2 mrad),
    whatever the moves done, so the joints do not tell how far the swap has got; v0's begins the
    second and third moves still on its way back, far from them."""
    env = envs[f"AEM/SwapBlocks-{version}"]
    for seed in (0, 1):
        moves, qpos, marks = joints_at_move_starts(env, seed)
        assert moves == [0, 1, 2]
        off = off_start(qpos)
        if version == "v0":
            assert off[0] < _memory_history.ARMS_BACK  # step 0: the arm has not moved yet
            assert (off[1:] > 0.05).all(), off
            continue
        assert (off < _memory_history.ARMS_BACK).all(), off
        # Not only within 2 mrad: the same joint state at every move's start, to 1e-5 rad.
        assert np.ptp(qpos, axis=0).max() < 1e-5, np.ptp(qpos, axis=0)
        # The decision: after the first move, the first step with the arms back at their start,
        # at the latest when the second move begins.
        assert marks["cue_hidden_at"] < marks["decision_at"] <= marks["steps"][1]


def test_swap_blocks_v1_move_starts_vary_with_the_seed(envs):
    """v1's expert waits at rest a number of steps drawn from the seed before each move: two
    seeds begin their moves at other steps, the same seed at the same ones, and the joint state
    at every move's start of both is the same to 1e-5 rad. (Not bit for bit: a seed run again
    in the same environment, after another episode, differs by 1e-7 rad in its last digits.)"""
    env = envs["AEM/SwapBlocks-v1"]
    task = env.unwrapped
    runs = {}
    for seed in (0, 1, 0):
        moves, qpos, marks = joints_at_move_starts(env, seed)
        assert moves == [0, 1, 2]
        waits = task.move_waits
        assert len(waits) == 3 and all(0 <= w <= swap_blocks.MAX_WAIT for w in waits)
        if seed in runs:  # the same seed: the same waits, the same steps
            assert (waits, marks["steps"]) == runs[seed][:2]
        runs[seed] = (waits, marks["steps"], qpos)
    assert runs[0][0] != runs[1][0]
    # Not only the first move: the gaps between the moves' starts differ too.
    assert np.diff(runs[0][1]).tolist() != np.diff(runs[1][1]).tolist()
    assert runs[0][1][0] != runs[1][1][0]
    both = np.concatenate([runs[0][2], runs[1][2]])
    assert np.ptp(both, axis=0).max() < 1e-5, np.ptp(both, axis=0)


def test_swap_blocks_v1_decision_is_the_first_step_with_the_arms_back(envs):
    env = envs["AEM/SwapBlocks-v1"]
    task = env.unwrapped
    env.reset(seed=2)
    assert task.decision_at is None
    for action in task.expert():
        env.step(action)
        if task.decision_at is not None:
            break
    assert task.moves_done == 1 and task.decision_at == task.elapsed_steps
    assert off_start(task.qpos) < _memory_history.ARMS_BACK


def test_swap_blocks_moves_in_order(envs):
    env = envs["AEM/SwapBlocks-v0"]
    env.reset(seed=0)
    u = env.unwrapped
    half = 0.025
    # The oracle: the starting trays of red and blue (one-hot over 3), then the moves done
    # (one-hot over 0..3).
    start = u.arrangements[0]

    def oracle(moves):
        return np.concatenate([np.eye(3)[start[0]], np.eye(3)[start[1]], np.eye(4)[moves]])

    assert u.oracle_size == 10 and u.oracle().dtype == np.float32
    assert np.array_equal(u.oracle(), oracle(0))
    # The layout after each move is a possible starting layout: the frame cannot tell them apart.
    assert all(r != b for r, b in u.arrangements)
    for moves, (red_tray, blue_tray) in enumerate(u.arrangements[1:], 1):
        assert not u.evaluate()["success"]
        rest_cube(env, u.red, u._tray_xy(red_tray), half)
        rest_cube(env, u.blue, u._tray_xy(blue_tray), half)
        terminated, info = hold(env)
        assert info["moves_done"] == moves and not info["fail"]
        assert np.array_equal(u.oracle(), oracle(moves))
        assert u.cue_hidden_at == 1
    assert info["success"] and terminated


def test_swap_blocks_wrong_cube_first_fails(envs):
    env = envs["AEM/SwapBlocks-v0"]
    env.reset(seed=1)
    u = env.unwrapped
    red, blue = u.arrangements[0]
    rest_cube(env, u.blue, u._tray_xy(3 - red - blue), 0.025)  # blue to the free tray first
    terminated, info = hold(env)
    assert info["fail"] and terminated
    # A cube in the air (on its way) is no arrangement at all.
    env.reset(seed=1)
    u.set_actor_pose(u.red, sapien.Pose([0.0, 0.3, 0.2]))
    assert not hold(env)[1]["fail"]


# --- CoverBlocks -------------------------------------------------------------------------------
def test_cover_blocks_lids_hide_the_colours(oracle_envs):
    env = oracle_envs["AEM/CoverBlocks-v0"]
    obs, _ = env.reset(seed=0)
    u = env.unwrapped

    def red_pixels(rgb):
        rgb = rgb.astype(int)
        return int(np.sum((rgb[..., 0] > 150) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)))

    assert red_pixels(obs["rgb"]) > 5
    assert not any(lid.find_component_by_type(sapien.render.RenderBodyComponent).visibility
                   for lid in u.lids)
    for _ in range(cover_blocks.CUE_STEPS):
        obs, *_ = env.step(u.qpos.astype(np.float32))
    assert u.cue_hidden_at == cover_blocks.CUE_STEPS
    assert red_pixels(obs["rgb"]) == 0
    for lid, slot in zip(u.lids, u.slots):
        assert np.linalg.norm(lid.pose.p[:2] - slot) < 0.005
        assert lid.pose.p[2] == pytest.approx(cover_blocks.LID_HALF_HEIGHT, abs=0.005)
    # The oracle is the slot of the next lid to lift: red's, as none is off yet.
    assert np.array_equal(obs["oracle"], np.eye(3)[u.slot_of["red"]])


def test_press_button_count_dots_vanish_from_the_picture(oracle_envs):
    env = oracle_envs["AEM/PressButtonCount-v0"]
    obs, _ = env.reset(seed=0)
    u = env.unwrapped

    def board_whites(rgb):
        # The board is the darkest large thing in the clean scene: count the light pixels in
        # the box it spans.
        dark = rgb.max(axis=2) < 100
        rows = np.flatnonzero(dark.sum(axis=1) > 10)
        cols = np.flatnonzero(dark[rows.min():rows.max() + 1].sum(axis=0) > 3)
        box = rgb[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        return int(np.sum(box.min(axis=2) > 180))

    assert board_whites(obs["rgb"]) >= 2 * u.target
    for _ in range(press_button_count.CUE_STEPS):
        obs, *_ = env.step(u.qpos.astype(np.float32))
    assert board_whites(obs["rgb"]) == 0


def uncover(env, name):
    u = env.unwrapped
    k = u.slot_of[name]
    u.set_actor_pose(u.lids[k], sapien.Pose([*u._discard_xy(k), cover_blocks.LID_HALF_HEIGHT]))
    return hold(env)


def test_cover_blocks_order(envs):
    env = envs["AEM/CoverBlocks-v0"]
    env.reset(seed=2)
    for _ in range(cover_blocks.CUE_STEPS):
        hold(env)
    u = env.unwrapped
    assert u.oracle_size == 3 and u.oracle().dtype == np.float32
    for name in cover_blocks.ORDER:
        assert not u.evaluate()["success"]
        # The oracle names the slot of the lid to lift next.
        assert np.array_equal(u.oracle(), np.eye(3)[u.slot_of[name]])
        terminated, info = uncover(env, name)
        assert not info["fail"]
    assert info["success"] and terminated
    assert np.array_equal(u.oracle(), np.zeros(3))  # all lids off: nothing to lift
    # Green first: fail.
    env.reset(seed=2)
    for _ in range(cover_blocks.CUE_STEPS):
        hold(env)
    terminated, info = uncover(env, "green")
    assert info["fail"] and terminated
    assert np.array_equal(env.unwrapped.oracle(), np.zeros(3))


# --- PressButtonCount --------------------------------------------------------------------------
def test_press_button_count_hides_the_dots(envs):
    env = envs["AEM/PressButtonCount-v0"]
    env.reset(seed=3)
    u = env.unwrapped
    shown = [dot.pose.p[2] > 0 for dot in u.dots]
    assert sum(shown) == u.target and all(shown[:u.target])
    # The oracle is the number of count presses still to make, one-hot over 0..5.
    assert u.oracle_size == 6 and u.oracle().dtype == np.float32
    assert np.array_equal(u.oracle(), np.eye(6)[u.target])
    for _ in range(press_button_count.CUE_STEPS):
        hold(env)
    assert u.cue_hidden_at == press_button_count.CUE_STEPS
    assert all(dot.pose.p[2] < 0 for dot in u.dots)


@pytest.mark.parametrize("extra", [0, -1, 1])
def test_press_button_count_done_checks_the_count(envs, extra):
    env = envs["AEM/PressButtonCount-v0"]
    env.reset(seed=4)
    u = env.unwrapped
    presses = u.target + extra
    for done in range(presses):
        assert np.array_equal(u.oracle(), np.eye(6)[u.target - done])
        press(u.count_button, u._after_step)
    assert u.count_button.presses == presses
    # Presses left, one-hot (0: press done now); all zeros past the target (a failed state).
    expected = np.eye(6)[u.target - presses] if extra <= 0 else np.zeros(6)
    assert np.array_equal(u.oracle(), expected)
    assert not u.evaluate()["done_pressed"]
    u.done_button.articulation.set_qpos([_memory_history.BUTTON_TRAVEL])
    u._after_step()
    u.done_button.articulation.set_qpos([0.0])
    terminated, info = hold(env)  # the cap is back up: the done press counts
    assert terminated and info["done_pressed"]
    assert info["success"] == (extra == 0) and info["fail"] == (extra != 0)
