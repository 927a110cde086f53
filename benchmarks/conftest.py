"""Shared set-up for the speed benchmarks: one-core pinning, one render device, machine info.

Run with ``.venv/bin/python -m pytest benchmarks --benchmark-only`` (the project's pytest config
skips benchmarks by default). ``python benchmarks/report.py`` runs them and writes BENCHMARKS.md.

Pinning. The headline figure is "steps per second on one core", so the whole process is pinned to
one CPU (``AEM_BENCH_CPUS``, default ``0``; a comma list such as ``0,1`` or ``all`` to leave the
affinity alone) in ``pytest_configure``, before SAPIEN, Mesa or torch start any thread. Threads
inherit the affinity of the thread that creates them, so Mesa lavapipe's rasteriser threads,
PhysX's and torch's all share that core: that is the honest one-core number. (Pinning inside a
fixture would come too late for threads started at import time, so the existing threads are pinned
too, from /proc/self/task, as a safety net.)
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import subprocess

PINNED_CPUS: set[int] | None = None  # None: not pinned


def _requested_cpus() -> set[int] | None:
    spec = os.environ.get("AEM_BENCH_CPUS", "0").strip().lower()
    if spec in ("", "all", "none"):
        return None
    return {int(part) for part in spec.split(",")}


def _pin_process(cpus: set[int]) -> None:
    os.sched_setaffinity(0, cpus)
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:  # a thread that ended meanwhile
            pass


def _cpu_ticks() -> dict[int, tuple[int, int]]:
    """Per CPU (busy, total) jiffies from /proc/stat; empty where unavailable."""
    ticks = {}
    try:
        with open("/proc/stat") as f:
            for line in f:
                name, *fields = line.split()
                if name.startswith("cpu") and name[3:].isdigit():
                    values = [int(v) for v in fields[:8]]
                    idle = values[3] + values[4]  # idle + iowait
                    ticks[int(name[3:])] = (sum(values) - idle, sum(values))
    except OSError:
        pass
    return ticks


_TICKS_AT_START: dict[int, tuple[int, int]] = {}


def pytest_configure(config):
    global PINNED_CPUS
    _TICKS_AT_START.update(_cpu_ticks())
    cpus = _requested_cpus()
    if cpus is not None:
        _pin_process(cpus)
        PINNED_CPUS = cpus


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["cpu_model"] = _cpu_model()
    machine_info["logical_cpus"] = os.cpu_count()
    machine_info["affinity"] = sorted(os.sched_getaffinity(0))
    machine_info["pinned"] = PINNED_CPUS is not None
    machine_info["loadavg_at_end"] = list(os.getloadavg())
    # How busy each CPU was over the session (ours included): shows whether other work ran on
    # the machine meanwhile, e.g. the CPU we are not pinned to at 100%.
    busy = {}
    for cpu, (busy_end, total_end) in _cpu_ticks().items():
        busy_start, total_start = _TICKS_AT_START.get(cpu, (0, 0))
        if total_end > total_start:
            busy[str(cpu)] = round((busy_end - busy_start) / (total_end - total_start), 2)
    machine_info["cpu_busy_fraction"] = busy
    machine_info["finished_utc"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    machine_info["versions"] = {dist: _version(dist) for dist in
                                ("aem-bench", "sapien", "mani_skill", "torch", "gymnasium",
                                 "numpy", "pytest-benchmark")}
    try:  # the lavapipe driver's package version (Debian); best effort
        machine_info["mesa_vulkan_drivers"] = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "mesa-vulkan-drivers"],
            check=False, capture_output=True, text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        machine_info["mesa_vulkan_drivers"] = "unknown"
    try:
        import sapien

        machine_info["render_device"] = sapien.render.get_device_summary().strip()
    except Exception as exc:  # noqa: BLE001  (machine info must never fail the run)
        machine_info["render_device"] = f"unknown ({exc})"
