"""What the command modules share: how a command is declared, and the argument checks.

Every command checks all of its arguments before any work starts and refuses a bad one with a
:class:`~aem_bench.errors.UsageError` naming it, so that a mistake costs a line, not a run. The
checks import the library lazily, inside each function: ``aem-bench --help`` and the leaderboard
load neither torch nor the simulator.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path

from aem_bench.errors import UsageError, bad_value, closest

DEFAULT_TASK = "AEM/HandoverBlock-v0"
RESULTS_DIR = Path("leaderboard/results")


def add_command(sub, name: str, func: Callable, summary: str, example: str,
                description: str | None = None) -> argparse.ArgumentParser:
    """A subcommand running ``func(args)``, listed by ``aem-bench --help`` with its one-line
    ``summary`` and an ``example``; its own ``--help`` opens with ``description`` (default: the
    summary) and ends with the example, unwrapped, to copy."""
    parser = sub.add_parser(name, help=f"{summary}\n  {example}",
                            description=description or summary, epilog=f"example: {example}",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(func=func)
    return parser


def add_backend_arguments(parser, runs: str, cluster_note: str = "") -> None:
    """``--backend`` and ``--address``: where ``runs`` (episodes, cells) run."""
    parser.add_argument("--backend", choices=["local", "ray"], default="local",
                        help=f"where {runs} run: this machine's processes, or Ray (pip install "
                        f"'aem-bench[ray]'){cluster_note}")
    parser.add_argument("--address", help="with --backend ray: the cluster to join (e.g. "
                        "ray://HOST:10001 or HOST:6379; default: a local Ray instance)")


def add_protocol_arguments(parser, defaults: dict, notes: dict | None = None) -> None:
    """A flag for each :class:`~aem_bench.recipe.Protocol` field named in ``defaults``
    (``--train-steps`` for ``train_steps``), of the field's type, helped by the field's
    documentation and ``notes[name]``: the flags and the recipe cannot drift apart."""
    from aem_bench.recipe import protocol_field

    for name, default in defaults.items():
        kind, doc = protocol_field(name)
        text = " ".join(part for part in (doc, (notes or {}).get(name)) if part)
        if default is not None:
            text += " (default %(default)s)"
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default, help=text)


def check_backend(args) -> None:
    """An ``--address`` only with ``--backend ray``, and Ray installed for it: a run asked for
    Ray never falls back to local processes."""
    if args.address and args.backend != "ray":
        raise UsageError("--address", "is a Ray cluster's: it needs --backend ray")
    if args.backend == "ray":
        from aem_bench.evaluator.backends import import_ray

        try:
            import_ray()
        except ModuleNotFoundError as err:
            if err.name != "ray":
                raise
            raise UsageError("--backend", str(err)) from None


def print_json(data: dict) -> None:
    print(json.dumps(data, indent=2))


def check_task_list(argument: str, values, scene: str | None = None) -> None:
    """An optional list of task ids: absent (None: the command's default tasks), else at least
    one, each registered (of ``scene``, if given)."""
    if values is None:
        return
    if not values:
        raise UsageError(argument, "expected at least one task id")
    check_tasks(argument, values, scene)


def check_tasks(argument: str, values, scene: str | None = None) -> None:
    """Each of ``values`` a registered task id (of ``scene``, if given)."""
    from aem_bench.registration import TASKS

    for value in values:
        if value not in TASKS:
            close = closest(value, TASKS)
            hint = (f"did you mean {', '.join(close)}?" if close
                    else "`aem-bench tasks` lists them")
            raise bad_value(argument, value, f"a registered task id ({hint})")
        if scene is not None and TASKS[value].scene != scene:
            raise bad_value(argument, value, f"a {scene} id, not a scene variant: "
                            f"{TASKS[value].base_id}")


def check_at_least(args, minimum: int, *names: str) -> None:
    """``args.NAME`` (for each of ``names``, as --NAME) an integer of at least ``minimum``."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value < minimum:
            raise bad_value(f"--{name.replace('_', '-')}", value,
                            f"an integer of at least {minimum}")


def check_input_file(argument: str, path) -> None:
    path = Path(path)
    if path.is_dir():
        raise UsageError(argument, f"{path} is a folder; expected a file")
    if not path.exists():
        raise UsageError(argument, f"{path}: no such file")


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be made in ``folder``: tried, as permissions alone do not tell (root,
    read-only mounts)."""
    import tempfile

    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".aem-bench-probe-")
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


def check_output(argument: str, path, folder: bool, overwrite: bool | None = None) -> None:
    """``path`` can be written as a file (``folder=False``) or a folder: not the other kind, under
    a folder that can be written. ``overwrite=False``: refuse an existing file."""
    path = Path(path)
    kind, other = ("folder", "file") if folder else ("file", "folder")
    if path.exists() and path.is_dir() != folder:
        raise UsageError(argument, f"{path} is a {other}; expected a {kind}")
    if overwrite is False and path.is_file():
        raise UsageError(argument, f"{path} exists; pass --overwrite to replace it")
    if path.is_dir():
        parent = path
    else:
        parent = next(p for p in path.absolute().parents if p.exists())
        if not parent.is_dir():
            raise UsageError(argument, f"{parent} is a file, so {path} cannot be made under it")
    if not _can_create_in(parent):
        raise UsageError(argument, f"{path}: {parent} is read-only")


def _type_name(hint) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def _has_type(value, hint) -> bool:
    """Whether a JSON value fits a config field's annotation (lists stand for tuples)."""
    import types
    import typing

    origin, params = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, param) for param in params)
    if hint is type(None) or hint is None:
        return value is None
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            return False
        if origin is tuple and params and params[-1] is not Ellipsis:
            return len(value) == len(params) and all(map(_has_type, value, params))
        return all(_has_type(item, params[0]) for item in value) if params else True
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return True  # an annotation this check does not know: the config's own validation decides


def config_overrides(argument: str, text: str | None, config_class) -> dict:
    """``text``, a JSON object of ``config_class`` fields with values of their types."""
    import dataclasses
    import typing

    if not text:
        return {}
    example = "a JSON object, e.g. '{\"lr\": 0.001}'"
    try:
        overrides = json.loads(text)
    except json.JSONDecodeError as err:
        raise bad_value(argument, text, f"{example} (not JSON: {err})") from None
    if not isinstance(overrides, dict):
        raise bad_value(argument, text, example)
    hints = typing.get_type_hints(config_class)
    fields = {field.name for field in dataclasses.fields(config_class)}
    for key, value in overrides.items():
        if key not in fields:
            close = closest(key, fields)
            raise UsageError(argument, f"unknown key {key!r}; expected a field of "
                             f"{config_class.__name__}"
                             + (f" (did you mean {', '.join(close)}?)" if close else ""))
        if not _has_type(value, hints[key]):
            raise UsageError(argument, f"bad value {json.dumps(value)} for {key!r}; expected "
                             f"{_type_name(hints[key])}")
    return overrides


def check_checkpoint(argument: str, path, pretraining: bool = False) -> None:
    """``path`` a policy checkpoint folder (what is wrong inside, load_policy names), or with
    ``pretraining`` also an AEM pretraining run."""
    path = Path(path)
    if path.is_file():
        raise UsageError(argument, f"{path} is a file; expected a checkpoint folder")
    if not path.exists():
        raise UsageError(argument, f"{path}: no such checkpoint folder")
    try:
        policy_type = json.loads((path / "config.json").read_text()).get("policy_type")
    except (OSError, ValueError, AttributeError):
        return
    if policy_type == "aem-pretrain" and not pretraining:
        raise UsageError(argument, f"{path} is an AEM pretraining checkpoint, not a policy; "
                         "train a policy on it: aem-bench train --policy aem-dp --config "
                         f"'{{\"aem_checkpoint\": \"{path}\"}}' ...")
