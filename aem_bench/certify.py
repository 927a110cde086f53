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

Next to the registered chance it computes the best fixed guess on those very seeds (the share of
the commonest hidden fact, what always acting on one value of the fact scores at best) and a
verdict by :data:`VERDICT_RULE`. ``python -m aem_bench.certify`` adds both to the entries of the
package's table from the seeds they record, without training anything.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import gymnasium as gym
import numpy as np

from aem_bench.demos import DemoWriter
from aem_bench.errors import InputError, UsageError
from aem_bench.evaluator import collect_provenance, evaluate
from aem_bench.expert import ExpertShortfall, expert_rollouts, run_expert
from aem_bench.registration import get_task, read_package_table, task_class
from aem_bench.stats import wilson_interval


@dataclass
class CertificateBudget:
    demos: int = 50
    train_steps: int = 2000
    eval_episodes: int = 100  # RoboTwin 2.0's and RMBench's count; about +-9 points at 95%
    camera: int = 64  # square camera side: 64 trains about 4x faster than 128 on a CPU
    batch_size: int = 64
    threads: int = 1
    expert_episodes: int = 100


CERTIFICATE_NAME = "certificate.json"  # in the output folder


def certificates_file() -> Path:
    from aem_bench import tasks

    return Path(tasks.__file__).resolve().parent / "memory_certificates.json"


def load_certificates() -> dict[str, dict]:
    return read_package_table(certificates_file())


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


MEMORY_NEEDED = "memory needed"
VERDICT_RULE = ("memory needed when the oracle policy's 95% Wilson interval lies above the "
                "no-oracle policy's AND the no-oracle rate is not above the upper end of the best "
                "fixed guess's interval (so that luck or a leak is not what it beat chance with)")


def best_fixed_guess(env_id: str, seeds: list[int]) -> dict:
    """What always acting on one value of the hidden fact scores on ``seeds`` at best: the share
    of the commonest value, with its Wilson 95% interval and the count of every value.

    Two readings of "the fact" are counted after each reset (state mode), and the higher share
    is the one returned (``of`` says which): ``hidden_fact()``, and the oracle observation at
    reset, which is what the oracle policy acts on. They differ where the action is fixed by
    something else than the fact: in RememberColor the fact is a colour out of nine but the
    oracle is the slot to lift, and always lifting one slot beats always naming one colour.
    """
    if not seeds:
        raise ValueError("best_fixed_guess needs at least one seed")
    env = gym.make(env_id, obs_mode="state")
    readings = {"hidden_fact": [], "oracle": []}
    try:
        for seed in seeds:
            env.reset(seed=int(seed))
            readings["hidden_fact"].append(int(env.unwrapped.hidden_fact()))
            oracle = np.asarray(env.unwrapped.oracle(), dtype=float)
            readings["oracle"].append(" ".join(f"{value:g}" for value in oracle))
    finally:
        env.close()
    best = None
    for of, values in readings.items():
        counts = Counter(values)
        value, hits = max(counts.items(), key=lambda item: (item[1], str(item[0])))
        if best is None or hits > best["successes"]:
            lo, hi = wilson_interval(hits, len(values))
            best = {"of": of, "value": value, "successes": hits, "episodes": len(values),
                    "rate": hits / len(values), "ci95": [lo, hi],
                    "counts": {str(key): n for key, n in sorted(counts.items())}}
    return best


def verdict(entry: dict) -> str:
    """:data:`MEMORY_NEEDED` or "not shown: REASONS", by :data:`VERDICT_RULE`, from an entry's
    ``with_oracle``, ``without_oracle`` and ``best_fixed_guess``."""
    for key in ("with_oracle", "without_oracle", "best_fixed_guess"):
        if key not in entry:
            raise ValueError(f"a certificate entry needs {key!r} for a verdict; it has "
                             f"{sorted(entry)}")
    oracle, blind, guess = entry["with_oracle"], entry["without_oracle"], entry["best_fixed_guess"]
    reasons = []
    if not oracle["ci95"][0] > blind["ci95"][1]:
        reasons.append(f"the oracle interval ({100 * oracle['ci95'][0]:.0f}-"
                       f"{100 * oracle['ci95'][1]:.0f}%) overlaps the no-oracle one "
                       f"({100 * blind['ci95'][0]:.0f}-{100 * blind['ci95'][1]:.0f}%)")
    if blind["rate"] > guess["ci95"][1]:
        reasons.append(f"the no-oracle rate ({100 * blind['rate']:.0f}%) is above the best fixed "
                       f"guess's upper bound ({100 * guess['ci95'][1]:.0f}%)")
    return MEMORY_NEEDED if not reasons else "not shown: " + "; ".join(reasons)


def add_verdicts(record: str | Path) -> dict[str, dict]:
    """Compute ``best_fixed_guess`` (on each entry's no-oracle seeds) and ``verdict`` for every
    entry of the table ``record``, write them into it and return the table."""
    record = Path(record)
    certificates = json.loads(record.read_text())
    for entry in certificates.values():
        oracle_seeds, seeds = entry["with_oracle"]["seeds"], entry["without_oracle"]["seeds"]
        if oracle_seeds != seeds:
            raise ValueError(f"{entry['task']}: the two policies were evaluated on different "
                             "seeds, so no one best fixed guess applies to both")
        entry["best_fixed_guess"] = best_fixed_guess(entry["task"], seeds)
        entry["verdict"] = verdict(entry)
    record.write_text(json.dumps(certificates, indent=2, sort_keys=True) + "\n")
    return certificates


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
        raise ExpertShortfall(f"the expert of {env_id} solved only {written} seeds")

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

    command = (f"aem-bench certify --task {env_id} --demos {budget.demos} --train-steps "
               f"{budget.train_steps} --episodes {budget.eval_episodes} --camera {budget.camera}")
    entry = certificate_entry(env_id, rates, budget, command, started)
    write_certificate(entry, out_dir, record)
    return entry


def write_certificate(entry: dict, out_dir: str | Path, record: str | Path | None = None) -> dict:
    """Write ``entry`` to ``out_dir/certificate.json``, merge it into the table ``record`` if
    given, and return it."""
    path = Path(out_dir) / CERTIFICATE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entry, indent=2, sort_keys=True) + "\n")
    if record is not None:
        record_certificate(entry, record)
    return entry


def describe_certificate(entry: dict) -> str:
    """A certificate in words: each policy's rate, the best fixed guess, the verdict, chance, the
    expert's rate and the minutes it took."""
    task = entry["task"]
    lines = []
    for name in ("with_oracle", "without_oracle"):
        rate = entry[name]
        lines.append(f"{task} {name}: {rate['successes']}/{rate['episodes']} "
                     f"({100 * rate['rate']:.0f}%, 95% CI {100 * rate['ci95'][0]:.0f}-"
                     f"{100 * rate['ci95'][1]:.0f}%)")
    guess = entry["best_fixed_guess"]
    lines.append(f"{task} best fixed guess on the same seeds: {guess['successes']}/"
                 f"{guess['episodes']} ({100 * guess['rate']:.0f}%, 95% CI "
                 f"{100 * guess['ci95'][0]:.0f}-{100 * guess['ci95'][1]:.0f}%)")
    lines.append(f"verdict: {entry['verdict']}")
    lines.append(f"chance {entry['chance']:.2f}; expert {entry['expert']['successes']}/"
                 f"{entry['expert']['episodes']}; {entry['minutes']} min")
    return "\n".join(lines)


def certificate_entry(env_id: str, rates: dict, budget: CertificateBudget, command: str,
                      started: float) -> dict:
    """A certificate from the two policies' rates ({"with_oracle", "without_oracle"}: successes,
    episodes, rate, ci95, seeds): the best fixed guess on their seeds, the expert's rate, when
    the cue leaves the frame, the provenance and the verdict."""
    spec = get_task(env_id)
    seeds = rates["without_oracle"]["seeds"]
    if rates["with_oracle"]["seeds"] != seeds:
        raise UsageError("rates", f"{env_id}: the two policies were evaluated on different "
                         "seeds, so no one best fixed guess applies to both")
    guess = best_fixed_guess(env_id, seeds)
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
        "best_fixed_guess": guess,
        "budget": budget.__dict__,
        **{key: value for key, value in collect_provenance().items() if key != "created"},
        "minutes": round((time.perf_counter() - started) / 60, 1),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "command": command,
    }
    entry["verdict"] = verdict(entry)
    return entry


def record_certificate(entry: dict, record: str | Path) -> None:
    """Merge ``entry`` into the table ``record``, re-reading it: certificates of other tasks may
    have been written by another process meanwhile."""
    record = Path(record)
    certificates = read_package_table(record)
    certificates[entry["task"]] = entry
    record.write_text(json.dumps(certificates, indent=2, sort_keys=True) + "\n")


def _result_rate(result: dict) -> dict:
    return {"successes": result["successes"], "episodes": result["episodes"],
            "rate": result["success_rate"], "ci95": result["success_ci95"],
            "seeds": result["seeds"]}


# What a certificate reads of a results file (dotted names are nested keys): the leaderboard's
# schema (aem_bench.leaderboard.results) has the rest, or leaves these optional.
CERTIFY_FIELDS = ("task", "episodes", "successes", "success_rate", "success_ci95", "seeds",
                  "observations", "training.recipe.demos_sha256", "training.recipe.demo_episodes",
                  "training.recipe.policy", "training.recipe.steps", "training.recipe.batch_size",
                  "training.recipe.seed", "training.recipe.config_overrides.image_size",
                  "training.recipe.command")


def _missing_fields(result: dict) -> list[str]:
    missing = []
    for dotted in CERTIFY_FIELDS:
        value = result
        for key in dotted.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            missing.append(dotted)
    return missing


def certificate_from_results(env_id: str, without_oracle: dict, with_oracle: dict,
                             command: str, sources: tuple[str, str] | None = None) -> dict:
    """The certificate of two results files already made (a sweep's single-frame cells without
    and with the oracle), so that nothing is trained twice. Both must be of ``env_id``, carry
    their training recipe, read the oracle only in ``with_oracle``, and differ in nothing else
    of their training: the same demonstrations (by digest), steps, batch and seed. ``sources``:
    the two files, which the errors name (else "without_oracle" and "with_oracle")."""
    started = time.perf_counter()
    sources = sources or ("without_oracle", "with_oracle")
    recipes = {}
    for name, result, oracle, source in (("without_oracle", without_oracle, False, sources[0]),
                                         ("with_oracle", with_oracle, True, sources[1])):
        if not isinstance(result, dict):
            raise InputError(f"{source}: not a results file (not a JSON object)")
        missing = _missing_fields(result)
        if missing:
            no_recipe = not isinstance(result.get("training"), dict) or not result[
                "training"].get("recipe")
            raise InputError(f"{source}: a certificate cannot be made from this results file: "
                             f"it lacks {', '.join(missing)}" + (
                                 " (it does not record its training recipe: its checkpoint has "
                                 "no recipe.json)" if no_recipe else ""))
        if result["task"] != env_id:
            raise UsageError(name, f"{source}: the result is of {result['task']}, not {env_id}")
        if ("oracle" in result["observations"]) != oracle:
            raise UsageError(name, f"{source}: the result's policy "
                             f"{'does not read' if oracle else 'reads'} the oracle "
                             f"(observations: {result['observations']})")
        image_size = result["training"]["recipe"]["config_overrides"]["image_size"]
        if not (isinstance(image_size, list) and image_size and isinstance(image_size[0], int)):
            raise InputError(f"{source}: field 'training.recipe.config_overrides.image_size' "
                             f"must be [height, width], got {image_size!r}")
        recipes[name] = result["training"]["recipe"]
    same = ("demos_sha256", "demo_episodes", "policy", "steps", "batch_size", "seed")
    differ = [key for key in same if recipes["with_oracle"].get(key)
              != recipes["without_oracle"].get(key)]
    if differ:
        raise UsageError("with_oracle", f"the two results were trained differently in {differ}: "
                         "a certificate compares policies that differ only in the oracle")
    recipe = recipes["without_oracle"]
    camera = recipe["config_overrides"]["image_size"][0]
    budget = CertificateBudget(demos=recipe["demo_episodes"], train_steps=recipe["steps"],
                               eval_episodes=without_oracle["episodes"], camera=camera,
                               batch_size=recipe["batch_size"])
    rates = {"with_oracle": _result_rate(with_oracle),
             "without_oracle": _result_rate(without_oracle)}
    entry = certificate_entry(env_id, rates, budget, command, started)
    entry["trained_by"] = {name: r["command"] for name, r in recipes.items()}
    # The code that trained the policies, else the code that evaluated them; never this process's,
    # which only added the fixed guess and the expert's rate (its commit is `certified_at`).
    entry["certified_at"] = entry.get("git_commit")
    entry["git_commit"] = (recipe.get("git_commit") or without_oracle.get("git_commit")
                           or "unknown: neither results file records it")
    # The machine and threads the policies were evaluated with, not this process's.
    entry["hardware"] = without_oracle.get("hardware") or entry.get("hardware")
    return entry


if __name__ == "__main__":
    table = add_verdicts(certificates_file())
    for env_id, entry in sorted(table.items()):
        guess = entry["best_fixed_guess"]
        print(f"{env_id}: best fixed guess {guess['successes']}/{guess['episodes']} "
              f"(chance {entry['chance']:.2f}); {entry['verdict']}")
    sys.exit(0)
