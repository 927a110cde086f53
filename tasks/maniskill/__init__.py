"""ManiSkill3 versions of AEM tasks, batched for GPU simulation (``sim_backend="physx_cuda"``).

The rest of the suite is raw SAPIEN, one scene per process, rendered on the CPU. These tasks
are ManiSkill3 ``BaseEnv``s instead: one process steps many parallel scenes, on the GPU when
there is one (on the CPU, ManiSkill3 runs one scene per env). Observations, actions, rewards and
success are torch tensors with a leading batch dimension.

Registration here is lazy: ``import aem_bench`` registers the ids with Gymnasium without
importing ManiSkill3 (seconds of import time); the first ``gym.make`` imports the module, which
registers the class with ManiSkill3, and builds the env the way ManiSkill3's own ``gym.make``
does (its time-limit wrapper, no passive checker).

Layer: with the tasks, at the bottom. The ports import ManiSkill3, Gymnasium and the constants
of the SAPIEN tasks they port (``_memory_cues``, ``remember_color``: the palette, the slots, the
cue's timeline), so that both versions pose the same episode; never anything above the tasks.
"""

from __future__ import annotations

import importlib

import gymnasium as gym
from gymnasium.envs.registration import WrapperSpec

# Gymnasium id -> (module in this package, max episode steps)
MANISKILL_TASKS: dict[str, tuple[str, int]] = {
    f"AEM/RememberColor{n}-MS3-v0": ("remember_color", 130) for n in (3, 5, 9)
}


def make(env_id: str, **kwargs):
    """Gymnasium entry point: import the task's module (it registers with ManiSkill3), then
    build it through ManiSkill3's registry."""
    importlib.import_module(f"{__name__}.{MANISKILL_TASKS[env_id][0]}")
    from mani_skill.utils.registration import make as make_maniskill

    return make_maniskill(env_id, **kwargs)


for _env_id, (_module, _max_steps) in MANISKILL_TASKS.items():
    if _env_id not in gym.registry:
        gym.register(
            _env_id,
            entry_point=f"{__name__}:make",
            kwargs={"env_id": _env_id},
            max_episode_steps=_max_steps,
            disable_env_checker=True,  # ManiSkill3's batched tensors are not what it checks
            additional_wrappers=(WrapperSpec(
                "MSTimeLimit", entry_point="mani_skill.utils.registration:TimeLimitWrapper",
                kwargs={"max_episode_steps": _max_steps}),),
        )
