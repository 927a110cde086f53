"""Leaderboard results files: one JSON object per file, as written by ``aem_bench.evaluator``.

Required fields (dotted names are nested keys)::

    policy              str
    encoder             str             the zoo encoder ("singleframe", "aem", ...) or "custom"
    head                str             the zoo action head ("dp", "flow", ...) or "custom"
    task                str             a registered id, e.g. "AEM/HandoverBlock-v0"
    variant             str             the task's registered scene; "clean" when absent
    episodes            int >= 1        equal to len(seeds)
    seeds               list[int]       distinct
    success_rate        number in [0, 1]
    success_ci95        [lo, hi]        0 <= lo <= success_rate <= hi <= 1
    latency_ms.median   number >= 0
    latency_ms.p95      number >= latency_ms.median
    hardware.cpu        str
    hardware.cores      int
    versions            dict[str, str]
    git_commit          str or null
    created             ISO 8601 timestamp

Optional fields, checked when present::

    successes                   int             success_rate * episodes
    encoder_latency_ms.median   number >= 0 or null     null: the policy does not report it
    encoder_latency_ms.p95      number >= median, or null with it
    peak_rss_mb                 number >= 0 or null
    episodes_per_hour           number > 0 or null
    workers                     int >= 1
    records                     list of {"seed": int, "success": bool, ...}, one per seed in
                                the order of seeds, as many successes as success_rate says

Other fields (env_kwargs, steps_per_second, ...) are allowed and kept. Every error names the file
and the field, so a hand-edited or truncated file is caught before it enters a table.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import NoReturn

from aem_bench.errors import InputError
from aem_bench.registration import TASKS

_NUMBER = (int, float)
_NULL = type(None)

SCHEMA: dict[str, tuple[type, ...]] = {
    "policy": (str,),
    "encoder": (str,),
    "head": (str,),
    "task": (str,),
    "variant": (str,),
    "episodes": (int,),
    "seeds": (list,),
    "success_rate": _NUMBER,
    "success_ci95": (list,),
    "latency_ms": (dict,),
    "latency_ms.median": _NUMBER,
    "latency_ms.p95": _NUMBER,
    "hardware": (dict,),
    "hardware.cpu": (str,),
    "hardware.cores": (int,),
    "versions": (dict,),
    "git_commit": (str, _NULL),
    "created": (str,),
}
# Checked only when the top-level field is there; its nested keys are then required.
OPTIONAL: dict[str, tuple[type, ...]] = {
    "successes": (int,),
    "encoder_latency_ms": (dict,),
    "encoder_latency_ms.median": (*_NUMBER, _NULL),
    "encoder_latency_ms.p95": (*_NUMBER, _NULL),
    "peak_rss_mb": (*_NUMBER, _NULL),
    "episodes_per_hour": (*_NUMBER, _NULL),
    "workers": (int,),
    "records": (list,),
}
DEFAULTS = {"variant": "clean"}

# Rates and interval ends are floats computed separately; allow for their rounding.
_TOLERANCE = 1e-9

Fail = Callable[[str, str], NoReturn]


class ResultsFileError(InputError):
    """A results file is unreadable or does not follow the schema above."""


_MISSING = object()


def _lookup(data: dict, dotted: str):
    for key in dotted.split("."):
        if not isinstance(data, dict) or key not in data:
            return _MISSING
        data = data[key]
    return data


def _is_int(value) -> bool:
    # bool is an int subclass, but True is not an episode count or a seed.
    return isinstance(value, int) and not isinstance(value, bool)


def _check_types(result: dict, fail: Fail) -> None:
    present_optional = {
        name: types for name, types in OPTIONAL.items() if name.split(".")[0] in result
    }
    for name, types in {**SCHEMA, **present_optional}.items():
        value = _lookup(result, name)
        if value is _MISSING:
            fail(name, "is missing")
        if isinstance(value, bool) or not isinstance(value, types):
            expected = " or ".join("null" if t is _NULL else t.__name__ for t in types)
            fail(name, f"must be {expected}, got {type(value).__name__} {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            fail(name, f"must be finite, got {value}")


def _check_task(result: dict, fail: Fail) -> None:
    task, variant = result["task"], result["variant"]
    if task not in TASKS:
        fail("task", f"is {task!r}, which is not a registered task (see `aem-bench tasks`)")
    scene = TASKS[task].scene
    if variant != scene:
        fail("variant", f"is {variant!r} but {task} is the {scene!r} scene")


def _check_success(result: dict, fail: Fail) -> None:
    episodes, seeds, rate = result["episodes"], result["seeds"], result["success_rate"]
    if episodes < 1:
        fail("episodes", f"must be at least 1, got {episodes}")
    if not all(_is_int(seed) for seed in seeds):
        fail("seeds", "must contain only integers")
    if len(seeds) != episodes:
        fail("seeds", f"has {len(seeds)} entries but episodes is {episodes}")
    if len(set(seeds)) != len(seeds):
        fail("seeds", "contains duplicates")
    if not 0 <= rate <= 1:
        fail("success_rate", f"must be in [0, 1], got {rate}")
    if "successes" in result and result["successes"] != round(rate * episodes):
        fail(
            "successes",
            f"is {result['successes']} but success_rate * episodes is {rate * episodes}",
        )

    ci = result["success_ci95"]
    if len(ci) != 2 or not all(isinstance(x, _NUMBER) and not isinstance(x, bool) for x in ci):
        fail("success_ci95", f"must be [lo, hi] numbers, got {ci!r}")
    lo, hi = ci
    if not (lo >= 0 and hi <= 1 and lo - _TOLERANCE <= rate <= hi + _TOLERANCE):
        fail("success_ci95", f"{ci!r} must satisfy 0 <= lo <= success_rate ({rate}) <= hi <= 1")


def _check_quantiles(result: dict, name: str, fail: Fail) -> None:
    """``name.median`` >= 0 and ``name.p95`` >= it; both null means "not measured"."""
    median, p95 = result[name]["median"], result[name]["p95"]
    if (median is None) != (p95 is None):
        fail(f"{name}.p95", f"({p95}) and {name}.median ({median}) must both be numbers or null")
    if median is None:
        return
    if median < 0:
        fail(f"{name}.median", f"must be >= 0, got {median}")
    if p95 < median:
        fail(f"{name}.p95", f"({p95}) must be >= {name}.median ({median})")


def _check_resources(result: dict, fail: Fail) -> None:
    _check_quantiles(result, "latency_ms", fail)
    if "encoder_latency_ms" in result:
        _check_quantiles(result, "encoder_latency_ms", fail)
    if (peak := result.get("peak_rss_mb")) is not None and peak < 0:
        fail("peak_rss_mb", f"must be >= 0, got {peak}")
    if (throughput := result.get("episodes_per_hour")) is not None and throughput <= 0:
        fail("episodes_per_hour", f"must be > 0, got {throughput}")
    if "workers" in result and result["workers"] < 1:
        fail("workers", f"must be at least 1, got {result['workers']}")


def _check_records(result: dict, fail: Fail) -> None:
    """Per-episode records must tell the same story as the summary fields."""
    records = result["records"]
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            fail(f"records[{index}]", f"must be an object, got {type(record).__name__}")
        if not _is_int(record.get("seed")):
            fail(f"records[{index}].seed", f"must be int, got {record.get('seed')!r}")
        if not isinstance(record.get("success"), bool):
            fail(f"records[{index}].success", f"must be bool, got {record.get('success')!r}")
    if len(records) != result["episodes"]:
        fail("records", f"has {len(records)} entries but episodes is {result['episodes']}")
    if [record["seed"] for record in records] != result["seeds"]:
        fail("records", "seeds differ from the 'seeds' field (one record per seed, same order)")
    successes = sum(record["success"] for record in records)
    expected = round(result["success_rate"] * result["episodes"])
    if successes != expected:
        fail("records", f"have {successes} successes but success_rate * episodes is {expected}")


def validate_result(result: dict, source: str = "<result>") -> dict:
    """Check ``result`` against the schema; return a copy with defaults filled in."""

    def fail(name: str, problem: str) -> NoReturn:
        raise ResultsFileError(f"{source}: field '{name}' {problem}")

    if not isinstance(result, dict):
        raise ResultsFileError(f"{source}: expected a JSON object, got {type(result).__name__}")
    result = {**DEFAULTS, **result}

    _check_types(result, fail)
    _check_task(result, fail)
    _check_success(result, fail)
    _check_resources(result, fail)
    if "records" in result:
        _check_records(result, fail)
    for package, version in result["versions"].items():
        if not isinstance(version, str):
            fail(f"versions.{package}", f"must be str, got {type(version).__name__}")
    try:
        datetime.fromisoformat(result["created"])
    except ValueError:
        fail("created", f"must be an ISO 8601 timestamp, got {result['created']!r}")
    return result


def load_result(path: str | os.PathLike) -> dict:
    """Read and validate one results file: a :class:`ResultsFileError` names it and what is
    wrong (not JSON, cut short, a field missing or off)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ResultsFileError(f"{path}: not valid JSON: {err}") from err
    except OSError as err:
        raise ResultsFileError(f"{path}: cannot be read ({err.strerror})") from err
    return validate_result(data, source=str(path))


def load_results(directory: str | os.PathLike) -> list[dict]:
    """Read and validate every ``*.json`` file in ``directory`` (sorted by name)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ResultsFileError(f"{directory}: no such results directory")
    return [load_result(path) for path in sorted(directory.glob("*.json"))]


# The fields of a memory probe's JSON (``aem-bench probe``) that the leaderboard shows.
PROBE_FIELDS = ("task", "memory", "checkpoint", "step", "probe_accuracy", "probe_ci95",
                "frame_probe_accuracy", "qpos_probe_accuracy", "episodes")


def load_probes(directory: str | os.PathLike) -> list[dict]:
    """Every memory probe in ``directory`` (sorted by name); none when it does not exist. A
    :class:`ResultsFileError` names a file that is not JSON or lacks a field shown."""
    directory = Path(directory)
    probes = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            probe = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ResultsFileError(f"{path}: not a JSON memory probe: {err}") from None
        missing = [key for key in PROBE_FIELDS if not isinstance(probe, dict) or key not in probe]
        if missing:
            raise ResultsFileError(f"{path}: a memory probe without the field(s) {missing}")
        probes.append(probe)
    return probes
