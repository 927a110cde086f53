"""Task registration: one decorator puts a task in Gymnasium's registry and in our task table.

    @register_task("AEM/HandoverBlock-v0", max_episode_steps=400, arms=2, skills=("handover",))
    class HandoverBlockEnv(TableTopEnv): ...

registers three ids, one per scene variant: ``AEM/HandoverBlock-v0`` (clean),
``AEM/HandoverBlock-Cluttered-v0`` and ``AEM/HandoverBlock-Randomized-v0``. The variant is also a
keyword, so ``gym.make("AEM/HandoverBlock-v0", scene="randomized")`` is the same environment.

Gymnasium 1.x has no plugin auto-discovery, so users ``import aem_bench`` first (or write
``gym.make("aem_bench:AEM/HandoverBlock-v0")``, which imports it for them).
"""

from __future__ import annotations

import importlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import gymnasium as gym

# MIKASA-Robo's memory types: what kind of fact must be carried across the frames.
MEMORY_TYPES = ("object", "spatial", "sequential", "capacity")
VARIANT_SUFFIXES = {"clean": "", "cluttered": "-Cluttered", "randomized": "-Randomized"}


def variant_id(env_id: str, scene: str) -> str:
    """``AEM/StackBlocksTwo-v0`` -> ``AEM/StackBlocksTwo-Cluttered-v0`` for ``scene="cluttered"``."""
    name, version = env_id.rsplit("-", 1)
    return f"{name}{VARIANT_SUFFIXES[scene]}-{version}"


@dataclass(frozen=True)
class TaskSpec:
    env_id: str
    base_id: str  # the clean variant's id: one task, three scenes
    scene: str
    entry_point: str
    max_episode_steps: int
    arms: int
    skills: tuple[str, ...]
    memory: str | None = None  # the memory type a non-Markovian task needs; None if Markovian
    chance: float | None = None  # memory tasks: success rate of guessing the hidden fact
    description: str = ""
    kwargs: dict = field(default_factory=dict)
    # A newer version of the task replaces this one in the suites (the id stays registered, so
    # its results and demonstrations still load).
    superseded_by: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


TASKS: dict[str, TaskSpec] = {}


def register_task(env_id: str, *, max_episode_steps: int, arms: int, skills: tuple[str, ...],
                  memory: str | None = None, chance: float | None = None,
                  supersedes: str | None = None, **kwargs):
    """Register a task class under ``env_id`` in each scene (a class decorator). ``supersedes``:
    the id of an earlier version that this one replaces in the suites."""
    if memory is not None and memory not in MEMORY_TYPES:
        raise ValueError(f"memory must be one of {MEMORY_TYPES} or None, got {memory!r}")
    def decorator(cls):
        for scene in VARIANT_SUFFIXES:
            spec = TaskSpec(
                env_id=variant_id(env_id, scene),
                base_id=env_id,
                scene=scene,
                entry_point=f"{cls.__module__}:{cls.__qualname__}",
                max_episode_steps=max_episode_steps,
                arms=arms,
                skills=tuple(skills),
                memory=memory,
                chance=chance,
                description=(cls.__doc__ or "").strip().split("\n")[0],
                kwargs={**kwargs, "scene": scene},
            )
            gym.register(id=spec.env_id, entry_point=spec.entry_point,
                         max_episode_steps=max_episode_steps, kwargs=spec.kwargs)
            TASKS[spec.env_id] = spec
            if supersedes is not None:
                old = variant_id(supersedes, scene)
                TASKS[old] = replace(TASKS[old], superseded_by=spec.env_id)
        cls.task_spec = TASKS[env_id]
        return cls

    return decorator


def current_tasks() -> dict[str, TaskSpec]:
    """The suites' tasks: every registered id but those a newer version supersedes."""
    return {env_id: spec for env_id, spec in TASKS.items() if spec.superseded_by is None}


def get_task(env_id: str) -> TaskSpec:
    if env_id not in TASKS:
        known = ", ".join(sorted(TASKS)) or "none"
        raise KeyError(f"unknown task {env_id!r}; registered tasks: {known}")
    return TASKS[env_id]


def task_class(env_id: str) -> type:
    """The environment class behind ``env_id`` (for its class attributes; builds nothing)."""
    module, name = get_task(env_id).entry_point.split(":")
    return getattr(importlib.import_module(module), name)


def expert_success_file() -> Path:
    """Measured expert success per task id, beside the tasks; ``aem-bench tasks --measure``."""
    from aem_bench import tasks

    return Path(tasks.__file__).resolve().parent / "expert_success.json"


def measured_expert_success() -> dict[str, dict]:
    """``{env_id: {"episodes", "successes", "first_seed", "mean_steps", "machine"}}``; empty if
    never measured."""
    path = expert_success_file()
    return json.loads(path.read_text()) if path.is_file() else {}
