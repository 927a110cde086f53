"""The ``aem-bench`` command line.

    aem-bench expert      --task ID --episodes N [--json]        expert success rate
    aem-bench demos       --task ID --episodes N --out FILE.h5   record successful expert episodes
    aem-bench train       --policy NAME --demos FILE.h5 --out DIR
    aem-bench eval        --policy DIR --task ID --episodes N [--json] [--out FILE.json]
    aem-bench leaderboard [--results DIR] [--out FILE.md]
    aem-bench pipeline    --task ID --out DIR                      all of the above, small default
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# Before torch is imported: OpenMP workers that spin-wait at barriers stall badly (seconds per
# training step) when anything else, the CPU renderer included, wants the same cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from tqdm import tqdm

DEFAULT_TASK = "AEM/HandoverBlock-v0"
RESULTS_DIR = Path("leaderboard/results")


def _print_json(data: dict) -> None:
    print(json.dumps(data, indent=2))


# --- expert and demonstrations ---------------------------------------------------------------
def cmd_expert(args) -> int:
    from aem_bench.expert import expert_rollouts

    seeds = range(args.seed, args.seed + args.episodes)
    results = []
    bar = tqdm(expert_rollouts(args.task, seeds), total=args.episodes, desc="expert",
               disable=args.json, unit="ep")
    for result in bar:
        results.append(result)
        bar.set_postfix(success=f"{sum(r.success for r in results)}/{len(results)}")
    successes = sum(r.success for r in results)
    summary = {
        "task": args.task,
        "episodes": len(results),
        "successes": successes,
        "success_rate": successes / len(results),
        "failed_seeds": [r.seed for r in results if not r.success],
        "mean_steps": sum(r.steps for r in results) / len(results),
    }
    if args.json:
        _print_json(summary)
    else:
        print(f"{args.task}: expert solved {successes}/{len(results)} seeds "
              f"({100 * summary['success_rate']:.1f}%); failed seeds {summary['failed_seeds']}")
    return 0


def cmd_demos(args) -> int:
    from aem_bench.demos import DemoWriter
    from aem_bench.expert import expert_rollouts

    # Try seeds in order until enough successes: the dataset holds only solved episodes.
    max_seeds = args.episodes * 2 + 10
    seeds = range(args.seed, args.seed + max_seeds)
    written, tried = 0, 0
    with DemoWriter(args.out, args.task, {}) as writer, \
            tqdm(total=args.episodes, desc=f"demos {args.task}", unit="ep") as bar:
        for result in expert_rollouts(args.task, seeds, record=True):
            tried += 1
            if result.success:
                writer.add(result.episode)
                written += 1
                bar.update(1)
            if written == args.episodes:
                break
    print(f"wrote {written} successful episodes ({tried} seeds tried) to {args.out}")
    if written < args.episodes:
        print(f"error: the expert solved only {written} of {tried} seeds", file=sys.stderr)
        return 1
    return 0


# --- training and evaluation -----------------------------------------------------------------
def cmd_train(args) -> int:
    from aem_bench.policies.training import train

    overrides = json.loads(args.config) if args.config else {}
    train(args.policy, args.demos, args.out, steps=args.steps, batch_size=args.batch_size,
          seed=args.seed, config_overrides=overrides, num_threads=args.threads)
    print(f"checkpoint written to {args.out}")
    return 0


def cmd_eval(args) -> int:
    import torch

    from aem_bench.evaluator import evaluate, write_report
    from aem_bench.policies import load_policy

    # One thread by default: the CPU renderer runs threads of its own, and torch's OpenMP workers
    # spin-wait at every barrier; on 2 cores, 2 torch threads stalled some calls 100-fold.
    torch.set_num_threads(args.threads)
    policy = load_policy(args.policy)
    name = args.name or f"{policy.config.policy_type} ({Path(args.policy).name})"
    report = evaluate(policy, args.task, args.episodes, seed=args.seed, policy_name=name,
                      progress=not args.json)
    summary = report.summary()
    out = Path(args.out) if args.out else Path(args.policy) / "eval" / (
        f"{args.task.replace('/', '_')}_{args.episodes}ep_seed{args.seed}.json")
    write_report(report, out)
    if args.json:
        _print_json({**summary, "results_file": str(out)})
    else:
        lo, hi = summary["success_ci95"]
        print(f"{args.task}: success {100 * summary['success_rate']:.1f}% "
              f"(95% CI {100 * lo:.1f}-{100 * hi:.1f}) over {summary['episodes']} episodes; "
              f"policy latency median {summary['latency_ms']['median']:.1f} ms, "
              f"p95 {summary['latency_ms']['p95']:.1f} ms; written to {out}")
    return 0


def cmd_leaderboard(args) -> int:
    from aem_bench.leaderboard.table import write_leaderboard

    text = write_leaderboard(args.results, args.out)
    print(text)
    return 0


# --- the main job ----------------------------------------------------------------------------
def cmd_pipeline(args) -> int:
    """Demonstrations -> training -> evaluation -> leaderboard table, on a small default."""
    out = Path(args.out)
    demos = out / "demos.h5"
    checkpoint = out / "checkpoint"
    results = out / "results"
    started = time.perf_counter()
    steps = [
        ("demos", lambda: cmd_demos(argparse.Namespace(
            task=args.task, episodes=args.demos, out=demos, seed=0))),
        ("train", lambda: cmd_train(argparse.Namespace(
            policy=args.policy, demos=demos, out=checkpoint, steps=args.train_steps,
            batch_size=args.batch_size, seed=0, config=None, threads=None))),
        ("eval", lambda: cmd_eval(argparse.Namespace(
            policy=checkpoint, task=args.task, episodes=args.eval_episodes, seed=100_000,
            json=False, threads=1,
            out=results / f"{args.policy}_{args.task.replace('/', '_')}.json",
            name=f"{args.policy} ({args.demos} demos, {args.train_steps} steps)"))),
        ("leaderboard", lambda: cmd_leaderboard(argparse.Namespace(
            results=results, out=out / "LEADERBOARD.md"))),
    ]
    for name, run in steps:
        print(f"\n== {name} ({time.perf_counter() - started:.0f} s so far) ==", flush=True)
        if run() != 0:
            print(f"pipeline stopped at '{name}'", file=sys.stderr)
            return 1
    print(f"\npipeline finished in {time.perf_counter() - started:.0f} s; outputs in {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aem-bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("expert", help="success rate of a task's scripted expert")
    p.add_argument("--task", default=DEFAULT_TASK)
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--seed", type=int, default=0, help="first seed (seeds are consecutive)")
    p.add_argument("--json", action="store_true", help="print a JSON summary only")
    p.set_defaults(func=cmd_expert)

    p = sub.add_parser("demos", help="record the expert's successful episodes to HDF5")
    p.add_argument("--task", default=DEFAULT_TASK)
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demos)

    p = sub.add_parser("train", help="train a policy on demonstrations")
    p.add_argument("--policy", default="singleframe-dp")
    p.add_argument("--demos", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", help='JSON of config overrides, e.g. \'{"num_inference_steps": 5}\'')
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint: success rate, CI, latency")
    p.add_argument("--policy", type=Path, required=True, help="checkpoint directory")
    p.add_argument("--task", default=DEFAULT_TASK)
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=100_000,
                   help="first evaluation seed (demonstrations use seeds from 0)")
    p.add_argument("--out", help="results JSON (default: CHECKPOINT/eval/...json)")
    p.add_argument("--name", help="policy name shown in the leaderboard")
    p.add_argument("--threads", type=int, default=1, help="torch threads for the policy")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("leaderboard", help="render results files as a Markdown table")
    p.add_argument("--results", type=Path, default=RESULTS_DIR)
    p.add_argument("--out", type=Path, default=Path("leaderboard/README.md"))
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("pipeline", help="demos, training, evaluation and table on a small default")
    p.add_argument("--task", default=DEFAULT_TASK)
    p.add_argument("--policy", default="singleframe-dp")
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument("--demos", type=int, default=10)
    p.add_argument("--train-steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.set_defaults(func=cmd_pipeline)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, KeyError, FileNotFoundError) as err:
        # Bad input (a damaged file, an unknown name): one clear line, not a traceback.
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"aem-bench {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
