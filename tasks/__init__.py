"""The suite's tasks, imported as ``aem_bench.tasks``: one module per task, helpers in ``_*.py``.

Importing this package registers every task under ``AEM/`` without importing a task module: the
ids, entry points and metadata come from ``registry.json`` beside this file, and the first
``gym.make`` of an id imports its module (and SAPIEN). So ``import aem_bench`` stays cheap, and
what only reads metadata (the leaderboard, ``aem-bench tasks``) never starts a simulator.
``maniskill/`` holds ManiSkill3 ports for GPU simulation, registered as lazily.

A new task is one new file with a ``@register_task`` class (see ``handover_block.py``), then
``aem-bench tasks --write-metadata`` to rewrite ``registry.json``; until then the new module is
imported with the package, with a warning, and ``tests/test_task_metadata.py`` fails.

Layer: the bottom, with ``aem_bench.sim``. Task modules may import ``aem_bench.sim``,
``aem_bench.registration``, ``aem_bench.seeds`` and each other; never the policy zoo, the
evaluator, the leaderboard or the command line (``tests/test_layers.py``).
"""

from __future__ import annotations

import importlib
import pkgutil
import warnings
from pathlib import Path

from aem_bench.registration import (
    WRITE_METADATA,
    TaskSpec,
    declared_tasks,
    metadata_text,
    read_metadata,
    register,
)
from aem_bench.tasks import maniskill as _maniskill  # noqa: F401  (registers AEM/*-MS3-*, lazily)

METADATA_FILE = Path(__file__).resolve().parent / "registry.json"


def task_modules() -> list[str]:
    """Every module of this package that declares tasks (helpers start with ``_``)."""
    return [f"{__name__}.{module.name}" for module in pkgutil.iter_modules(__path__)
            if not module.name.startswith("_") and not module.ispkg]


def suite_metadata() -> dict[str, TaskSpec]:
    """What the task modules declare now (importing every one of them): ``registry.json``'s
    content as it should be."""
    return declared_tasks(task_modules())


def write_metadata(path: Path = METADATA_FILE) -> Path:
    """Rewrite ``registry.json`` (or ``path``) from the declarations."""
    path = Path(path)
    path.write_text(metadata_text(suite_metadata().values()))
    return path


def _register_suite() -> None:
    try:
        known = read_metadata(METADATA_FILE)
    except ValueError as err:  # missing or damaged: every module declares its own, as it loads
        warnings.warn(str(err), stacklevel=2)
        known = []
    for spec in known:
        register(spec)
    # Modules the metadata does not name (a new task): imported now, so that their ids exist.
    named = {spec.entry_point.split(":")[0] for spec in known}
    unnamed = [module for module in task_modules() if module not in named]
    if known and unnamed:
        warnings.warn(f"{', '.join(unnamed)}: not in {METADATA_FILE.name}, so imported with the "
                      f"package; run `{WRITE_METADATA}`", stacklevel=2)
    for module in unnamed:
        importlib.import_module(module)


_register_suite()
