"""The ManiSkill3 (batched, GPU-capable) RememberColor: registration, seeding, the cue's timeline,
success and failure, observations, the scripted expert; on the GPU, many scenes at once.

On the CPU ManiSkill3 runs one scene per env, so the CPU tests check the task's logic with
``num_envs=1``; ``test_gpu_*`` run where CUDA is present and check that the batched code gives
each scene the episode its seed gives on the CPU, and that the expert solves them in parallel.
"""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

import aem_bench  # noqa: F401  (registers the ids)
from aem_bench.tasks._memory_cues import HIDDEN_Z, LIFT_SUCCESS, PALETTE
from aem_bench.tasks.maniskill import MANISKILL_TASKS
from aem_bench.tasks.remember_color import APPEAR_STEP, CUE_STEPS

ENV_ID = "AEM/RememberColor3-MS3-v0"
EXPERT = {"obs_mode": "state", "control_mode": "pd_ee_delta_pos"}
HOLD = torch.tensor([[0.0, 0.0, 0.0, 1.0]])  # keep still, gripper open
GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (GPU simulation)")


@pytest.fixture(scope="module")
def env():
    env = gym.make(ENV_ID, **EXPERT)
    yield env
    env.close()


def run_expert(env, seed: int | list[int]) -> dict:
    """Roll the expert out until every scene has succeeded or failed once, or time runs out."""
    base = env.unwrapped
    env.reset(seed=seed)
    success = torch.zeros(base.num_envs, dtype=torch.bool, device=base.device)
    fail = torch.zeros_like(success)
    truncated = torch.zeros_like(success)
    while not ((success | fail).all() or truncated.all()):
        *_, truncated, info = env.step(base.expert_action())
        success |= info["success"] & ~fail
        fail |= info["fail"] & ~success
    return {"success": success.cpu(), "fail": fail.cpu()}


def test_ids_register_without_importing_maniskill():
    code = ("import sys, gymnasium as gym, aem_bench; "
            "assert 'mani_skill' not in sys.modules, 'import aem_bench imported mani_skill'; "
            "print(sorted(k for k in gym.registry if k.endswith('-MS3-v0')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(sorted(MANISKILL_TASKS))


def test_same_seed_same_episode_other_seeds_differ(env):
    base = env.unwrapped

    def episode(seed):
        obs, _ = env.reset(seed=seed)
        return (base.slot_colour.tolist(), base.answer_colour.tolist(),
                base.display_xy.tolist(), obs.numpy().copy())

    first = episode(7)
    episode(8)
    again = episode(7)
    assert first[:3] == again[:3]
    np.testing.assert_array_equal(first[3], again[3])
    layouts = {str(episode(seed)[:2]) for seed in range(6)}
    assert len(layouts) > 1
    assert len(set(first[0][0])) == 3, "the choices' colours must be distinct"
    assert first[1][0] in first[0][0], "the answer is one of the choices"


def test_cue_shown_then_hidden_choices_arrive_late(env):
    base = env.unwrapped
    env.reset(seed=3)
    answer = int(base.answer_colour[0])
    drawn = base.slot_colour[0].tolist()
    for step in range(1, APPEAR_STEP + 2):
        env.step(HOLD)
        shown_z = float(base.shown[answer].pose.p[0, 2])
        choice_z = [float(base.choices[k].pose.p[0, 2]) for k in drawn]
        if step < CUE_STEPS:
            assert shown_z > 0.0, f"the cue must be on the table at step {step}"
            assert all(z < 0.0 for z in choice_z), f"choices must wait at step {step}"
        elif step < APPEAR_STEP:
            assert shown_z == pytest.approx(HIDDEN_Z), f"the cue must be hidden at step {step}"
            assert all(z < 0.0 for z in choice_z), f"choices must wait at step {step}"
        else:
            assert all(0.0 < z < 0.05 for z in choice_z), f"choices on the table at step {step}"
    # The other palette colours stay parked, and no other shown cube ever appears.
    for k in set(range(len(PALETTE))) - set(drawn):
        assert float(base.choices[k].pose.p[0, 2]) < 0.0
    for k in set(range(len(PALETTE))) - {answer}:
        assert float(base.shown[k].pose.p[0, 2]) == pytest.approx(HIDDEN_Z)


def lift(base, colour: int, height: float) -> None:
    """Teleport a choice cube straight up (a stand-in for a grasp, for the success check)."""
    from mani_skill.utils.structs.pose import Pose

    p = base.choices[colour].pose.p.clone()
    p[:, 2] += height
    base.choices[colour].set_pose(Pose.create_from_pq(p, base.choices[colour].pose.q))


def test_lifting_the_answer_succeeds_lifting_another_fails(env):
    base = env.unwrapped
    env.reset(seed=4)
    for _ in range(APPEAR_STEP):
        *_, info = env.step(HOLD)
    assert not info["success"].any() and not info["fail"].any()
    answer = int(base.answer_colour[0])
    wrong = next(k for k in base.slot_colour[0].tolist() if k != answer)

    lift(base, answer, LIFT_SUCCESS + 0.03)
    _, reward, terminated, _, info = env.step(HOLD)
    assert info["success"].item() and not info["fail"].item() and terminated.item()
    assert reward.item() == pytest.approx(1.0)

    lift(base, wrong, 0.05)
    _, reward, terminated, _, info = env.step(HOLD)
    assert info["fail"].item() and not info["success"].item() and terminated.item()
    assert reward.item() == 0.0


@pytest.mark.parametrize("choices", [3, 5, 9])
def test_expert_solves_every_seed(choices):
    env = gym.make(f"AEM/RememberColor{choices}-MS3-v0", **EXPERT)
    try:
        outcomes = [run_expert(env, seed) for seed in range(5)]
    finally:
        env.close()
    assert [bool(o["success"][0]) for o in outcomes] == [True] * 5


def test_expert_refuses_another_control_mode():
    env = gym.make(ENV_ID, obs_mode="state", control_mode="pd_joint_delta_pos")
    try:
        env.reset(seed=0)
        with pytest.raises(ValueError, match="pd_ee_delta_pos"):
            env.unwrapped.expert_action()
    finally:
        env.close()


def test_rgb_camera_sees_the_cue_go_and_oracle_names_it():
    env = gym.make(ENV_ID, obs_mode="rgb", control_mode="pd_ee_delta_pos", oracle=True)
    try:
        obs, _ = env.reset(seed=5)
        frames = [obs["sensor_data"]["base_camera"]["rgb"][0].numpy()]
        for _ in range(CUE_STEPS):
            obs, *_ = env.step(HOLD)
        frames.append(obs["sensor_data"]["base_camera"]["rgb"][0].numpy())
        oracle = obs["extra"]["oracle"][0]
        answer = int(env.unwrapped.answer_colour[0])
    finally:
        env.close()
    shown, hidden = frames
    assert shown.shape == (128, 128, 3) and shown.dtype == np.uint8
    assert shown.std() > 10, "a real rendered image, not a blank one"
    # The arm holds still, so what changed between the frames is the cue leaving.
    changed = np.abs(shown.astype(int) - hidden.astype(int)).sum(-1) > 60
    assert changed.sum() > 20, "the shown cube must be visible, then gone"
    assert oracle.tolist() == [float(k == answer) for k in range(len(PALETTE))]


def test_vector_env_wrapper_autoresets(env):
    """RL libraries take ManiSkill3's vector wrapper; it must reset a finished episode."""
    from mani_skill.vector.wrappers.gymnasium import ManiSkillVectorEnv

    vec = ManiSkillVectorEnv(gym.make(ENV_ID, **EXPERT), auto_reset=True, ignore_terminations=False)
    base = vec.unwrapped
    try:
        vec.reset(seed=11)
        for _ in range(130):
            *_, terminated, truncated, info = vec.step(base.expert_action())
            if (terminated | truncated).any():
                break
        assert info["final_info"]["success"].item()
        assert int(base.elapsed_steps[0]) == 0, "the finished scene was reset"
    finally:
        vec.close()


# --------------------------------------------------------------------------------------------- #
# GPU simulation: many scenes in one process
# --------------------------------------------------------------------------------------------- #
@GPU
def test_gpu_scenes_get_their_seeds_episodes_and_the_expert_solves_them():
    seeds = list(range(100, 164))
    gpu = gym.make(ENV_ID, num_envs=len(seeds), sim_backend="physx_cuda", **EXPERT)
    cpu = gym.make(ENV_ID, **EXPERT)
    try:
        gpu.reset(seed=seeds)
        batched = gpu.unwrapped.slot_colour.cpu().tolist(), gpu.unwrapped.answer_colour.tolist()
        for i, seed in enumerate(seeds[:16]):
            cpu.reset(seed=seed)
            assert cpu.unwrapped.slot_colour[0].tolist() == batched[0][i], f"seed {seed}"
            assert int(cpu.unwrapped.answer_colour[0]) == batched[1][i], f"seed {seed}"
        outcome = run_expert(gpu, seeds)
    finally:
        gpu.close()
        cpu.close()
    assert outcome["success"].float().mean() >= 0.9, outcome
    assert not outcome["fail"].any()


@GPU
def test_gpu_partial_reset_restarts_only_the_chosen_scenes():
    gpu = gym.make(ENV_ID, num_envs=8, sim_backend="physx_cuda", **EXPERT)
    base = gpu.unwrapped
    try:
        gpu.reset(seed=list(range(8)))
        for _ in range(APPEAR_STEP + 1):
            gpu.step(HOLD.repeat(8, 1))
        on_table = torch.stack([base.choices[k].pose.p[:, 2] for k in range(len(PALETTE))], 1)
        assert ((on_table > 0).sum(1) == 3).all(), "every scene shows its three choices"
        restart = torch.tensor([1, 5], device=base.device)
        gpu.reset(options={"env_idx": restart})
        heights = torch.stack([base.choices[k].pose.p[:, 2] for k in range(len(PALETTE))], 1)
        assert (heights[restart] < 0).all(), "restarted scenes park their choices again"
        kept = torch.tensor([0, 2, 3, 4, 6, 7], device=base.device)
        assert ((heights[kept] > 0).sum(1) == 3).all(), "the other scenes are untouched"
        assert (base.elapsed_steps[restart] == 0).all()
        assert (base.elapsed_steps[kept] == APPEAR_STEP + 1).all()
    finally:
        gpu.close()
