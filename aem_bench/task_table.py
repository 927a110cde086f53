"""The task table `aem-bench tasks` prints: one row per registered task, from the registry's
metadata, the experts' measured success rates and the memory certificates, and its formatting as a
plain or Markdown table. Imports the registry and ``aem_bench.certify``; nothing above them.
"""

from __future__ import annotations


def task_rows(memory_only: bool = False) -> list[dict]:
    """Every registered id with its metadata, measured expert rate and certificate (None where
    there is none). ``memory_only`` keeps the memory suite's view: memory tasks, less the versions
    a newer one supersedes."""
    from aem_bench.certify import load_certificates
    from aem_bench.registration import TASKS, measured_expert_success

    measured = measured_expert_success()
    certificates = load_certificates()
    rows = []
    for spec in TASKS.values():
        if memory_only and (spec.memory is None or spec.superseded_by is not None):
            continue
        expert = measured.get(spec.env_id)
        rows.append({
            "certificate": certificates.get(spec.env_id),
            "id": spec.env_id, "scene": spec.scene, "arms": spec.arms,
            "skills": list(spec.skills), "memory": spec.memory, "chance": spec.chance,
            "max_episode_steps": spec.max_episode_steps,
            "expert_success": (None if expert is None
                               else expert["successes"] / expert["episodes"]),
            "expert_episodes": None if expert is None else expert["episodes"],
            "description": spec.description,
            "superseded_by": spec.superseded_by,
        })
    return rows


def format_task_table(rows: list[dict], markdown: bool = False) -> str:
    """Every task's arms, skills, memory, chance, step limit and expert rate."""
    from tabulate import tabulate

    return tabulate([[r["id"], r["arms"], ", ".join(r["skills"]), r["memory"] or "-",
                      _chance_cell(r), r["max_episode_steps"], _expert_cell(r)] for r in rows],
                    headers=["id", "arms", "skills", "memory", "chance", "step limit",
                             "expert success"], tablefmt="github" if markdown else "simple")


def format_memory_table(rows: list[dict], markdown: bool = False) -> str:
    """The clean memory tasks with their certificates, and the rule the verdict follows."""
    from tabulate import tabulate

    from aem_bench.certify import VERDICT_RULE

    table = tabulate([[r["id"], r["memory"], _chance_cell(r), _cue_cell(r["certificate"]),
                       _expert_cell(r), _rate_cell(r["certificate"], "with_oracle"),
                       _rate_cell(r["certificate"], "without_oracle"),
                       _guess_cell(r["certificate"]), _verdict_cell(r["certificate"])]
                      for r in rows if r["scene"] == "clean"],
                     headers=["id", "memory", "chance", "cue hidden at step", "expert",
                              "DP with oracle", "DP without oracle",
                              "best fixed guess, same seeds", "verdict"],
                     tablefmt="github" if markdown else "simple")
    return f"{table}\n\nverdict: {VERDICT_RULE}"


def _expert_cell(row: dict) -> str:
    if row["expert_success"] is None:
        return "not measured"
    return f"{100 * row['expert_success']:.0f}% of {row['expert_episodes']}"


def _chance_cell(row: dict) -> str:
    return "-" if row["chance"] is None else f"{100 * row['chance']:.0f}%"


def _rate_cell(certificate: dict | None, name: str) -> str:
    if certificate is None:
        return "not measured"
    rate = certificate[name]
    return (f"{rate['successes']}/{rate['episodes']} "
            f"({100 * rate['ci95'][0]:.0f}-{100 * rate['ci95'][1]:.0f}%)")


def _cue_cell(certificate: dict | None) -> str:
    cue = certificate and certificate["cue_hidden_at"]
    return "-" if not cue else f"{cue['median']:g}"


def _guess_cell(certificate: dict | None) -> str:
    # Certificates written without the best fixed guess say so rather than look unmeasured.
    if certificate is None or "best_fixed_guess" not in certificate:
        return "not computed"
    return _rate_cell(certificate, "best_fixed_guess")


def _verdict_cell(certificate: dict | None) -> str:
    return "-" if certificate is None else certificate.get("verdict", "not computed")
