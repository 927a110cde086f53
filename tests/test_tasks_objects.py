"""Success checks and experts of the container tasks: basket, cup and plate, hammer, pot."""

import gymnasium as gym
import numpy as np
import pytest
import sapien

from aem_bench.expert import run_expert
from aem_bench.sim.poses import yaw_quat
from aem_bench.tasks import beat_block_hammer as hammer_task
from aem_bench.tasks import lift_pot as pot_task
from aem_bench.tasks import place_container_plate as plate_task
from aem_bench.tasks import place_object_basket as basket_task

TASKS = ("AEM/PlaceObjectBasket-v0", "AEM/PlaceContainerPlate-v0", "AEM/BeatBlockHammer-v0",
         "AEM/LiftPot-v0")


def _reset(envs, task, seed=0):
    env = envs[task]
    env.reset(seed=seed)
    return env.unwrapped


def _tilted(angle):
    """A rotation by ``angle`` about the world x axis."""
    return np.array([np.cos(angle / 2), np.sin(angle / 2), 0.0, 0.0])


# --- PlaceObjectBasket ---------------------------------------------------------------------------
def test_basket_success_state(envs):
    env = _reset(envs, "AEM/PlaceObjectBasket-v0")
    on_floor = env.basket.pose * sapien.Pose(
        [0.02, -0.03, basket_task.BASKET_FLOOR_HALF + basket_task.CAN_HALF_HEIGHT])
    env.set_actor_pose(env.can, sapien.Pose(on_floor.p))
    info = env.evaluate()
    assert info["success"] and info["can_inside_xy"] and info["can_below_rim"]


@pytest.mark.parametrize("local, check", [
    ((basket_task.BASKET_INNER_HALF + 0.04, 0.0, basket_task.CAN_HALF_HEIGHT), "can_inside_xy"),
    ((0.0, 0.0, basket_task.BASKET_WALL_TOP + 0.05), "can_below_rim"),  # held over the basket
])
def test_basket_near_misses(envs, local, check):
    env = _reset(envs, "AEM/PlaceObjectBasket-v0")
    env.set_actor_pose(env.can, sapien.Pose((env.basket.pose * sapien.Pose(local)).p))
    info = env.evaluate()
    assert not info["success"] and not info[check]


# --- PlaceContainerPlate -------------------------------------------------------------------------
def _cup_on_plate(env, offset_xy=(0.0, 0.0), quat=(1.0, 0.0, 0.0, 0.0)):
    height = plate_task.PLATE_HALF_HEIGHT * 2 + plate_task.CUP_HALF_HEIGHT
    centre = env.plate.pose.p + [*offset_xy, height - env.plate.pose.p[2]]
    env.set_actor_pose(env.cup, sapien.Pose(centre, quat))
    return env.evaluate()


def test_cup_on_plate_success_state(envs):
    env = _reset(envs, "AEM/PlaceContainerPlate-v0")
    info = _cup_on_plate(env, offset_xy=(0.03, 0.02))
    assert info["success"] and info["cup_upright"] and info["cup_resting"]


def test_cup_near_misses(envs):
    env = _reset(envs, "AEM/PlaceContainerPlate-v0")
    # Its base hangs over the plate's edge.
    info = _cup_on_plate(env, offset_xy=(plate_task.PLATE_RADIUS - plate_task.CUP_RADIUS + 0.01, 0))
    assert not info["success"] and not info["cup_on_plate_xy"]
    # Tipped by 25 degrees.
    info = _cup_on_plate(env, quat=_tilted(np.deg2rad(25)))
    assert not info["success"] and not info["cup_upright"]
    # Still in the air above the plate.
    env.set_actor_pose(env.cup, sapien.Pose(env.plate.pose.p + [0.0, 0.0, 0.1]))
    info = env.evaluate()
    assert not info["success"] and not info["cup_resting"]


# --- BeatBlockHammer -----------------------------------------------------------------------------
def _rest_hammer(env, local_point):
    """Lay the hammer level so that its ``local_point`` rests on the middle of the block top,
    then let one step of physics find the contacts."""
    top = env.block.pose.p + [0.0, 0.0, hammer_task.BLOCK_HALF_SIZE[2]]
    yaw = 0.4
    offset = (sapien.Pose(q=yaw_quat(yaw)) * sapien.Pose(local_point)).p
    env.set_actor_pose(env.hammer, sapien.Pose(top - offset, yaw_quat(yaw)))
    env.step(env.qpos)
    return env.evaluate()


def test_hammer_head_on_block_is_a_hit(envs):
    env = _reset(envs, "AEM/BeatBlockHammer-v0")
    head_bottom = np.array(hammer_task.HEAD_OFFSET) - [0.0, 0.0, hammer_task.HEAD_HALF_SIZE[2]]
    info = _rest_hammer(env, head_bottom)
    assert info["success"] and info["head_touches_block"] and info["head_over_block"]
    # The hit is latched for the episode, and forgotten at the next reset.
    env.set_actor_pose(env.hammer, sapien.Pose([0.0, 0.3, 0.2]))
    assert env.evaluate()["success"]
    env = _reset(envs, "AEM/BeatBlockHammer-v0")
    assert not env.evaluate()["success"]


def test_hammer_handle_on_block_is_no_hit(envs):
    env = _reset(envs, "AEM/BeatBlockHammer-v0")
    handle_bottom = [-0.05, 0.0, -hammer_task.HANDLE_HALF_SIZE[2]]
    info = _rest_hammer(env, handle_bottom)
    assert not info["success"] and not info["head_touches_block"]


def test_hammer_head_against_block_side_is_no_hit(envs):
    env = _reset(envs, "AEM/BeatBlockHammer-v0")
    # The hammer lies on the table with its head's face pushed against the block's side.
    block = env.block.pose.p
    face_x = hammer_task.HEAD_OFFSET[0] + hammer_task.HEAD_HALF_SIZE[0]
    centre = [block[0] - hammer_task.BLOCK_HALF_SIZE[0] - face_x - 0.001, block[1],
              hammer_task.HANDLE_HALF_SIZE[2]]
    env.set_actor_pose(env.hammer, sapien.Pose(centre))
    env.step(env.qpos)
    info = env.evaluate()
    assert not info["success"] and not info["head_over_block"]


# --- LiftPot -------------------------------------------------------------------------------------
def test_pot_near_misses(envs):
    env = _reset(envs, "AEM/LiftPot-v0")
    high = pot_task.POT_HALF_HEIGHT + pot_task.LIFT_GOAL + 0.02
    # High and level, but nobody holds it (the success state itself comes from the expert).
    env.set_actor_pose(env.pot, sapien.Pose([0.0, 0.0, high]))
    info = env.evaluate()
    assert info["pot_lifted"] and info["pot_level"] and not info["success"]
    # Tilted by 15 degrees.
    env.set_actor_pose(env.pot, sapien.Pose([0.0, 0.0, high], _tilted(np.deg2rad(15))))
    assert not env.evaluate()["pot_level"]
    # On the table.
    env.set_actor_pose(env.pot, sapien.Pose([0.0, 0.0, pot_task.POT_HALF_HEIGHT]))
    assert not env.evaluate()["pot_lifted"]


# --- experts -------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("seed", [0, 1])  # seed 0: the right arm works, seed 1: the left
def test_expert_solves(envs, task, seed):
    result = run_expert(envs[task], seed)
    assert result.success, result.failure
    assert result.steps < gym.spec(task).max_episode_steps


def test_pot_expert_lifts_with_both_arms(envs):
    env = envs["AEM/LiftPot-v0"]
    result = run_expert(env, 2)
    info = env.unwrapped.evaluate()
    assert result.success and info["left_grasping"] and info["right_grasping"]
