"""The report of an evaluation: its summary, the results file it becomes, and its provenance.

What lives here: :class:`EvalReport` (the records of an evaluation and what they add up to: the
success rate with its Wilson interval, latencies, throughput, memory), :func:`write_report` (the
strict JSON that is a leaderboard results file, see ``aem_bench.leaderboard.results``) and
:func:`collect_provenance` (the machine, the versions and the commit behind the numbers). It
imports the episode module, ``aem_bench.stats``, ``aem_bench.provenance`` and
``aem_bench.demos`` (package versions); never the tasks, the policy zoo or the leaderboard,
which reads these files without importing this module.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from aem_bench.demos import package_versions
from aem_bench.evaluator.episode import EpisodeRecord, latency_summary
from aem_bench.provenance import git_commit
from aem_bench.stats import wilson_interval


def collect_provenance() -> dict:
    """Where and with what the numbers were produced."""
    return {
        "hardware": _hardware(),
        "versions": package_versions(),
        "git_commit": git_commit(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _hardware() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass  # not Linux: keep the platform module's answer
    try:  # torch's thread count decides how fast a CPU policy answers
        import torch

        torch_threads = torch.get_num_threads()
    except ImportError:
        torch_threads = None
    return {"cpu": cpu, "cores": os.cpu_count() or 0, "torch_threads": torch_threads}


@dataclass
class EvalReport:
    policy: str
    task: str
    records: list[EpisodeRecord]
    env_kwargs: dict = field(default_factory=dict)
    variant: str = "clean"
    encoder: str = "custom"  # a zoo policy's encoder and head; "custom" for any other policy
    head: str = "custom"
    workers: int = 1
    provenance: dict = field(default_factory=collect_provenance)
    # What the policy reads ("rgb", "qpos", "oracle", "fact"): an oracle policy is a fact, not a
    # name.
    observations: list[str] | None = None
    # How the checkpoint was made (its recipe.json and the checkpoints it builds on), if known.
    training: dict | None = None

    @property
    def successes(self) -> int:
        return sum(record.success for record in self.records)

    def summary(self) -> dict:
        episodes = len(self.records)
        steps = sum(record.steps for record in self.records)
        seconds = sum(record.seconds for record in self.records)
        lo, hi = wilson_interval(self.successes, episodes)
        # One process's throughput, resets included: a run with W workers does about W times it.
        episode_seconds = seconds + sum(record.reset_seconds for record in self.records)
        peaks = [record.peak_rss_mb for record in self.records if record.peak_rss_mb is not None]
        return {
            "policy": self.policy,
            "encoder": self.encoder,
            "head": self.head,
            "task": self.task,
            "variant": self.variant,
            "episodes": episodes,
            "successes": self.successes,
            "success_rate": self.successes / episodes,
            "success_ci95": [lo, hi],
            "latency_ms": latency_summary(
                [ms for record in self.records for ms in record.latencies_ms]
            ),
            "encoder_latency_ms": latency_summary(
                [ms for record in self.records for ms in record.encoder_ms]
            ),
            "peak_rss_mb": round(max(peaks), 1) if peaks else None,
            "episodes_per_hour": (round(3600 * episodes / episode_seconds, 1)
                                  if episode_seconds > 0 else None),
            "workers": self.workers,
            "steps_per_second": round(steps / seconds, 2) if seconds > 0 else None,
            "errors": sum(record.error is not None for record in self.records),
            "seeds": [record.seed for record in self.records],
            "observations": self.observations,
            "training": self.training,
            **self.provenance,
        }

    def to_dict(self) -> dict:
        """The summary plus what is needed to rerun it and per-episode detail: the JSON content."""
        return {
            **self.summary(),
            "env_kwargs": self.env_kwargs,
            "records": [record.to_dict() for record in self.records],
        }


def write_report(report: EvalReport, path: str | os.PathLike) -> Path:
    """Write the report as strict JSON (no NaN) so that reading it back gives ``report.to_dict()``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n")
    return path
