"""The memory certificate of a memory task: evidence, measured, that the frame does not suffice.

For one task it measures, and writes to ``OUT/certificate.json`` (a maintainer then records it
in the package's ``tasks/memory_certificates.json``: ``aem-bench certify --record``):

1. what must be remembered (the task's ``memory_fact``) and at which step it leaves the
   observation (``cue_hidden_at`` over the expert's episodes);
2. a single-frame Diffusion Policy trained on expert demonstrations WITH the oracle (the hidden
   fact as an input, ``obs_mode="rgb+oracle"``): it should succeed;
3. the same policy, same demonstrations, same budget, WITHOUT the oracle: it should stay near the
   task's chance level;
4. the expert's success rate.

Both policies see the same episodes (the oracle is recorded alongside) and are evaluated on the
same expert-solvable seeds, so the only difference between them is the hidden fact.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import gymnasium as gym

from aem_bench.demos import DemoWriter
from aem_bench.evaluator import collect_provenance, evaluate
from aem_bench.expert import expert_rollouts, run_expert
from aem_bench.registration import get_task, task_class
from aem_bench.stats import wilson_interval


@dataclass
class CertificateBudget:
    demos: int = 50
    train_steps: int = 2000
    eval_episodes: int = 50
    camera: int = 64  # square camera side: 64 trains about 4x faster than 128 on a CPU
    batch_size: int = 64
    threads: int = 1
    expert_episodes: int = 100


CERTIFICATE_NAME = "certificate.json"  # in the output folder


def certificates_file() -> Path:
    from aem_bench import tasks

    return Path(tasks.__file__).resolve().parent / "memory_certificates.json"


def load_certificates() -> dict[str, dict]:
    path = certificates_file()
    return json.loads(path.read_text()) if path.is_file() else {}


def _cue_steps(env_id: str, seeds: range) -> list[int]:
    """``cue_hidden_at`` of each expert episode (state mode, fast)."""
    env = gym.make(env_id, obs_mode="state")
    steps = []
    try:
        for seed in seeds:
            run_expert(env, seed)
            if env.unwrapped.cue_hidden_at is not None:
                steps.append(int(env.unwrapped.cue_hidden_at))
    finally:
        env.close()
    return steps


def _rate(report) -> dict:
    successes, episodes = report.successes, len(report.records)
    lo, hi = wilson_interval(successes, episodes)
    return {"successes": successes, "episodes": episodes, "rate": successes / episodes,
            "ci95": [lo, hi], "seeds": [r.seed for r in report.records]}


def certify(env_id: str, out_dir: str | Path, budget: CertificateBudget | None = None,
            progress: bool = True, record: str | Path | None = None) -> dict:
    """Measure the certificate of ``env_id`` (a memory task, clean scene), write it to
    ``out_dir/certificate.json``, add it to the table ``record`` if given (the package's is
    :func:`certificates_file`) and return it."""
    import torch

    from aem_bench.policies.training import train

    budget = budget or CertificateBudget()
    spec = get_task(env_id)
    if spec.memory is None:
        raise ValueError(f"{env_id} is not a memory task (registered without memory=...)")
    out_dir = Path(out_dir)
    started = time.perf_counter()
    camera = (budget.camera, budget.camera)
    kwargs = {"obs_mode": "rgb+oracle", "camera_size": camera}

    demos = out_dir / "demos.h5"
    with DemoWriter(demos, env_id, kwargs) as writer:
        written = 0
        for result in expert_rollouts(env_id, range(10 * budget.demos), record=True, **kwargs):
            if result.success:
                writer.add(result.episode)
                written += 1
            if written == budget.demos:
                break
    if written < budget.demos:
        raise ValueError(f"the expert of {env_id} solved only {written} seeds")

    torch.set_num_threads(budget.threads)
    rates = {}
    for name, state_keys in (("with_oracle", ["qpos", "oracle"]), ("without_oracle", ["qpos"])):
        policy = train("singleframe-dp", demos, out_dir / name, steps=budget.train_steps,
                       batch_size=budget.batch_size, config_overrides={
                           "state_keys": state_keys},
                       num_threads=budget.threads, progress=progress)
        report = evaluate(policy.eval(), env_id, budget.eval_episodes,
                          env_kwargs={**kwargs, "obs_mode": "rgb+oracle"},
                          progress=progress, policy_name=f"singleframe-dp {name}")
        rates[name] = _rate(report)

    expert = list(expert_rollouts(env_id, range(budget.expert_episodes), obs_mode="state"))
    cue_steps = _cue_steps(env_id, range(min(20, budget.expert_episodes)))
    entry = {
        "task": env_id,
        "memory": spec.memory,
        "memory_fact": task_class(env_id).memory_fact,
        "cue_hidden_at": {"median": statistics.median(cue_steps), "min": min(cue_steps),
                          "max": max(cue_steps), "episodes": len(cue_steps)} if cue_steps else None,
        "chance": spec.chance,
        "expert": {"successes": sum(r.success for r in expert), "episodes": len(expert)},
        **rates,
        "budget": budget.__dict__,
        **{key: value for key, value in collect_provenance().items() if key != "created"},
        "minutes": round((time.perf_counter() - started) / 60, 1),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "command": f"aem-bench certify --task {env_id} --demos {budget.demos} "
                   f"--train-steps {budget.train_steps} --episodes {budget.eval_episodes} "
                   f"--camera {budget.camera}",
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / CERTIFICATE_NAME).write_text(json.dumps(entry, indent=2, sort_keys=True) + "\n")
    if record is None:
        return entry
    # Merge into the table as the last act, re-reading it: certificates of other tasks may have
    # been written by another process meanwhile.
    record = Path(record)
    certificates = json.loads(record.read_text()) if record.is_file() else {}
    certificates[env_id] = entry
    record.write_text(json.dumps(certificates, indent=2, sort_keys=True) + "\n")
    return entry
