"""Task registration: one decorator puts a task in Gymnasium's registry and in our task table.

    @register_task("AEM/HandoverBlock-v0", max_episode_steps=400, arms=2, skills=("handover",))
    class HandoverBlockEnv(TableTopEnv): ...

registers three ids, one per scene variant: ``AEM/HandoverBlock-v0`` (clean),
``AEM/HandoverBlock-Cluttered-v0`` and ``AEM/HandoverBlock-Randomized-v0``. The variant is also a
keyword, so ``gym.make("AEM/HandoverBlock-v0", scene="randomized")`` is the same environment.

Gymnasium 1.x has no plugin auto-discovery, so users ``import aem_bench`` first (or write
``gym.make("aem_bench:AEM/HandoverBlock-v0")``, which imports it for them).

The suite's registrations are also data: ``tasks/registry.json`` holds every declared spec, so
that ``import aem_bench`` registers the ids without importing a task module (and SAPIEN with it),
and what only reads metadata, such as the leaderboard, never starts a simulator. The first
``gym.make`` of an id imports its module, whose declaration then agrees with the file (a test
checks that it is current; ``aem-bench tasks --write-metadata`` rewrites it).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import gymnasium as gym

from aem_bench.errors import InputError, UsageError, read_json

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

    @classmethod
    def from_dict(cls, data: dict) -> TaskSpec:
        """The inverse of :meth:`to_dict` after a trip through JSON (lists back to tuples)."""
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"task spec {data.get('env_id')!r}: unknown fields {sorted(unknown)}")
        return cls(**{**data, "skills": tuple(data["skills"])})


# Every registered id: the committed metadata's and any declared since (a third party's task, or
# one of ours the metadata does not know yet).
TASKS: dict[str, TaskSpec] = {}
# What the @register_task declarations of the modules imported so far say.
_DECLARED: dict[str, TaskSpec] = {}
# Tasks of this package: their declarations are expected in the committed metadata.
SUITE_PACKAGE = "aem_bench.tasks"
WRITE_METADATA = "aem-bench tasks --write-metadata"


def register(spec: TaskSpec) -> None:
    """Put ``spec`` in ``TASKS`` and in Gymnasium's registry (replacing an earlier one). Its
    entry point is imported by the first ``gym.make``, not here."""
    TASKS[spec.env_id] = spec
    gym.registry.pop(spec.env_id, None)  # replaced on purpose: no "overriding" warning
    gym.register(id=spec.env_id, entry_point=spec.entry_point,
                 max_episode_steps=spec.max_episode_steps, kwargs=spec.kwargs)


def register_task(env_id: str, *, max_episode_steps: int, arms: int, skills: tuple[str, ...],
                  memory: str | None = None, chance: float | None = None,
                  supersedes: str | None = None, **kwargs):
    """Register a task class under ``env_id`` in each scene (a class decorator); an id the
    committed metadata registered already is left as it is. ``supersedes``: the id of an earlier
    version that this one replaces in the suites."""
    if memory is not None and memory not in MEMORY_TYPES:
        raise ValueError(f"memory must be one of {MEMORY_TYPES} or None, got {memory!r}")
    def decorator(cls):
        changed = []
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
            _DECLARED[spec.env_id] = spec
            if not _register_declared(spec):
                changed.append(spec.env_id)
            if supersedes is not None:
                old = variant_id(supersedes, scene)
                _DECLARED[old] = replace(_DECLARED[old], superseded_by=spec.env_id)
                TASKS[old] = replace(TASKS[old], superseded_by=spec.env_id)
        if changed and cls.__module__.startswith(SUITE_PACKAGE + "."):
            warnings.warn(f"{', '.join(changed)}: the declaration differs from the committed "
                          f"task metadata, and wins once imported; run `{WRITE_METADATA}`",
                          stacklevel=2)
        cls.task_spec = TASKS[env_id]
        return cls

    return decorator


def _register_declared(spec: TaskSpec) -> bool:
    """Register a declaration unless the metadata registered it as it is. False when the
    metadata holds another spec under its id (it is stale), which the declaration replaces."""
    known = TASKS.get(spec.env_id)
    if known is None:
        register(spec)
        return True
    # A newer version declares the supersession, perhaps in a module not imported yet: the
    # metadata's is kept.
    if replace(known, superseded_by=None) == spec:
        return True
    register(replace(spec, superseded_by=known.superseded_by))
    return False


def declared_tasks(modules: Iterable[str]) -> dict[str, TaskSpec]:
    """The specs that ``modules`` declare, importing them, in their order (and each module's
    order of declaration): the metadata to commit."""
    modules = list(modules)
    for module in modules:
        importlib.import_module(module)
    rank = {module: i for i, module in enumerate(modules)}
    specs = [spec for spec in _DECLARED.values() if spec.entry_point.split(":")[0] in rank]
    specs.sort(key=lambda spec: rank[spec.entry_point.split(":")[0]])  # stable: keeps the order
    return {spec.env_id: spec for spec in specs}


def metadata_text(specs: Iterable[TaskSpec]) -> str:
    """The metadata file's text: a note on where it comes from, then every spec by id."""
    return json.dumps({
        "generated_by": f"`{WRITE_METADATA}` from the @register_task declarations; "
                        "tests/test_task_metadata.py checks that it is current",
        "tasks": {spec.env_id: spec.to_dict() for spec in specs},
    }, indent=2) + "\n"


def read_metadata(path: Path) -> list[TaskSpec]:
    """The specs in a metadata file, checked: a damaged one is named, not half-read."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ValueError(f"{path}: no task metadata ({err.strerror}); write it with "
                         f"`{WRITE_METADATA}`") from None
    try:
        tasks = json.loads(text)["tasks"]
        specs = [TaskSpec.from_dict(data) for data in tasks.values()]
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: not a task metadata file ({err!r}); rewrite it with "
                         f"`{WRITE_METADATA}`") from None
    for env_id, spec in zip(tasks, specs):
        if env_id != spec.env_id:
            raise ValueError(f"{path}: the entry {env_id!r} holds the spec of {spec.env_id!r}")
    return specs


def current_tasks() -> dict[str, TaskSpec]:
    """The suites' tasks: every registered id but those a newer version supersedes."""
    return {env_id: spec for env_id, spec in TASKS.items() if spec.superseded_by is None}


def get_task(env_id: str) -> TaskSpec:
    if env_id not in TASKS:
        known = ", ".join(sorted(TASKS)) or "none"
        raise UsageError("env_id", f"unknown task {env_id!r}; registered tasks: {known}")
    return TASKS[env_id]


def task_class(env_id: str) -> type:
    """The environment class behind ``env_id`` (for its class attributes; builds nothing)."""
    module, name = get_task(env_id).entry_point.split(":")
    return getattr(importlib.import_module(module), name)


def tasks_folder() -> Path:
    """The folder of ``aem_bench.tasks`` (``tasks/`` in a clone), found without importing it."""
    return Path(importlib.util.find_spec(SUITE_PACKAGE).origin).resolve().parent


def expert_success_file() -> Path:
    """Measured expert success per task id, beside the tasks; ``aem-bench tasks --measure``."""
    return tasks_folder() / "expert_success.json"


def measured_expert_success() -> dict[str, dict]:
    """``{env_id: {"episodes", "successes", "first_seed", "mean_steps", "machine"}}``; empty if
    never measured."""
    return read_package_table(expert_success_file())


def read_package_table(path: Path) -> dict[str, dict]:
    """A table of the package (``tasks/*.json``: measured expert success, memory certificates),
    empty if it does not exist yet, or an :class:`InputError` naming it when it is damaged."""
    if not path.is_file():
        return {}
    recover = f"restore it (git checkout -- {path.name} in {path.parent})"
    table = read_json(path, recover)
    if not isinstance(table, dict):
        raise InputError(f"{path}: damaged (not a JSON object); {recover}")
    return table
