"""Leaderboard results files: one JSON object per file, as written by ``aem_bench.evaluator``.

Required fields (dotted names are nested keys)::

    policy              str
    task                str             e.g. "AEM/HandoverBlock-v0"
    variant             str             optional, "clean" when absent
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

Other fields (records, env_kwargs, steps_per_second, ...) are allowed and kept. ``successes``, when
present, must agree with ``success_rate``. Every error names the file and the field.
"""

from __future__ import annotations

import json
import math
import os
from datetime import datetime
from pathlib import Path
from typing import NoReturn

_NUMBER = (int, float)

SCHEMA: dict[str, tuple[type, ...]] = {
    "policy": (str,),
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
    "git_commit": (str, type(None)),
    "created": (str,),
}
DEFAULTS = {"variant": "clean"}

# Rates and interval ends are floats computed separately; allow for their rounding.
_TOLERANCE = 1e-9


class ResultsFileError(ValueError):
    """A results file is unreadable or does not follow the schema above."""


_MISSING = object()


def _lookup(data: dict, dotted: str):
    for key in dotted.split("."):
        if not isinstance(data, dict) or key not in data:
            return _MISSING
        data = data[key]
    return data


def validate_result(result: dict, source: str = "<result>") -> dict:
    """Check ``result`` against the schema; return a copy with defaults filled in."""

    def fail(name: str, problem: str) -> NoReturn:
        raise ResultsFileError(f"{source}: field '{name}' {problem}")

    if not isinstance(result, dict):
        raise ResultsFileError(f"{source}: expected a JSON object, got {type(result).__name__}")
    result = {**DEFAULTS, **result}

    for name, types in SCHEMA.items():
        value = _lookup(result, name)
        if value is _MISSING:
            fail(name, "is missing")
        # bool is an int subclass, but True is not an episode count or a rate.
        if isinstance(value, bool) or not isinstance(value, types):
            expected = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            fail(name, f"must be {expected}, got {type(value).__name__} {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            fail(name, f"must be finite, got {value}")

    episodes, seeds, rate = result["episodes"], result["seeds"], result["success_rate"]
    if episodes < 1:
        fail("episodes", f"must be at least 1, got {episodes}")
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
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
    if not (0 <= lo and hi <= 1 and lo - _TOLERANCE <= rate <= hi + _TOLERANCE):
        fail("success_ci95", f"{ci!r} must satisfy 0 <= lo <= success_rate ({rate}) <= hi <= 1")

    median, p95 = result["latency_ms"]["median"], result["latency_ms"]["p95"]
    if median < 0:
        fail("latency_ms.median", f"must be >= 0, got {median}")
    if p95 < median:
        fail("latency_ms.p95", f"({p95}) must be >= latency_ms.median ({median})")
    for package, version in result["versions"].items():
        if not isinstance(version, str):
            fail(f"versions.{package}", f"must be str, got {type(version).__name__}")
    try:
        datetime.fromisoformat(result["created"])
    except ValueError:
        fail("created", f"must be an ISO 8601 timestamp, got {result['created']!r}")
    return result


def load_results(directory: str | os.PathLike) -> list[dict]:
    """Read and validate every ``*.json`` file in ``directory`` (sorted by name)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ResultsFileError(f"{directory}: no such results directory")
    results = []
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ResultsFileError(f"{path}: not valid JSON: {err}") from err
        results.append(validate_result(data, source=str(path)))
    return results
