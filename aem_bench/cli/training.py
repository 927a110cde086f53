"""Commands that make checkpoints, and list what they are made of: ``train`` (a zoo policy on
demonstrations, also under torchrun), ``pretrain`` (AEM's pretraining), ``policies`` (the zoo)
and ``encoders`` (built-in and installed image encoders). Over ``aem_bench.policies``.
"""

from __future__ import annotations

import json
from pathlib import Path

from aem_bench.cli.common import (
    add_command,
    check_at_least,
    check_input_file,
    check_output,
    config_overrides,
    print_json,
)
from aem_bench.errors import UsageError, bad_value, closest


def _check_run_dir(args, names: tuple[str, ...]) -> None:
    """``--out`` of train or pretrain: a folder that holds no run, unless it is resumed or
    overwritten; ``--overwrite`` removes what the old run left (its evaluations included)."""
    import shutil

    from aem_bench.policies.distributed import launched_rank

    check_output("--out", args.out, folder=True)
    if args.resume and args.overwrite:
        raise UsageError("--overwrite", "give --resume or --overwrite, not both")
    # Under torchrun only rank 0 looks: another rank may look after rank 0 has begun writing this
    # run, and take its files for an old run's. An error on rank 0 stops the whole launch.
    if launched_rank() != 0:
        return
    found = [Path(args.out) / name for name in names if (Path(args.out) / name).exists()]
    if not found or args.resume:
        return
    if not args.overwrite:
        raise UsageError("--out", f"{args.out} holds a checkpoint; pass --resume to continue "
                         "it or --overwrite to replace it (and its evaluations in eval/)")
    for path in found:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _check_ablation(args, part: str) -> dict:
    from aem_bench.policies.configuration_aem import ABLATIONS, ablation

    if not args.ablation:
        return {}
    if args.ablation not in ABLATIONS:
        raise UsageError("--ablation", f"unknown AEM ablation {args.ablation!r}; expected one "
                         f"of {', '.join(ABLATIONS)}")
    return ablation(args.ablation, part)


def cmd_train(args) -> int:
    from aem_bench.policies import POLICIES, PolicyConfig, distributed
    from aem_bench.policies.training import LOG_NAME, RECIPE_NAME, STATE_DIR, train

    if args.policy not in POLICIES:
        close = closest(args.policy, POLICIES)
        raise bad_value("--policy", args.policy, "a zoo policy ("
                        + (f"did you mean {', '.join(close)}?" if close
                           else "`aem-bench policies` lists them") + ")")
    if args.ablation and not args.policy.startswith("aem-"):
        raise UsageError("--ablation", f"applies to the AEM policies (aem-dp, aem-flow), not "
                         f"{args.policy!r}")
    check_input_file("--demos", args.demos)
    check_at_least(args, 1, "steps", "batch_size", "save_every", "threads")
    check_at_least(args, 0, "seed")
    overrides = config_overrides("--config", args.config, PolicyConfig)
    overrides = {**_check_ablation(args, "policy"), **overrides}
    _check_run_dir(args, ("config.json", "model.safetensors", STATE_DIR, LOG_NAME, RECIPE_NAME,
                          "eval"))
    train(args.policy, args.demos, args.out, steps=args.steps, batch_size=args.batch_size,
          seed=args.seed, config_overrides=overrides, num_threads=args.threads,
          save_every=args.save_every, resume=args.resume,
          command=args.command_line)
    if distributed.launched_rank() == 0:  # under torchrun, the rank that wrote it says so
        print(f"checkpoint written to {args.out}")
    return 0


def cmd_pretrain(args) -> int:
    from aem_bench.policies import distributed
    from aem_bench.policies.configuration_aem import AEMConfig
    from aem_bench.policies.pretraining import pretrain
    from aem_bench.policies.training import LOG_NAME, RECIPE_NAME, STATE_DIR

    check_input_file("--demos", args.demos)
    check_at_least(args, 1, "steps", "save_every", "threads")
    check_at_least(args, 0, "seed")
    overrides = config_overrides("--config", args.config, AEMConfig)
    overrides = {**_check_ablation(args, "pretrain"), **overrides}
    _check_run_dir(args, ("config.json", "model.safetensors", STATE_DIR, LOG_NAME, RECIPE_NAME))
    pretrain(args.demos, args.out, steps=args.steps, seed=args.seed, config_overrides=overrides,
             num_threads=args.threads, save_every=args.save_every, resume=args.resume,
             command=args.command_line)
    if distributed.launched_rank() == 0:
        print(f"AEM checkpoint written to {args.out}")
    return 0


def cmd_policies(args) -> int:
    from tabulate import tabulate

    from aem_bench.policies import POLICIES, PolicyConfig

    rows = []
    for name, defaults in sorted(POLICIES.items()):
        config = PolicyConfig.from_dict({**defaults, "policy_type": name})
        rows.append({"policy": name, "encoder": config.encoder, "head": config.head,
                     "obs_horizon": config.obs_horizon, "pred_horizon": config.pred_horizon,
                     "action_steps": config.action_steps,
                     "inference_steps": config.num_inference_steps})
    if args.json:
        print_json(rows)
    else:
        print(tabulate(rows, headers="keys"))
    return 0


def _default_feature_dim(cls) -> int | None:
    """feature_dim with default options, when that is cheap: set on the class, or a from-scratch
    encoder built for a moment (a pretrained one would read its weights)."""
    if isinstance(getattr(cls, "feature_dim", None), int):
        return cls.feature_dim
    if cls.pretrained:
        return None
    try:
        return cls().feature_dim
    except (TypeError, ValueError):  # options without defaults: nothing cheap to say
        return None


def cmd_encoders(args) -> int:
    from aem_bench.policies.encoders import ENCODERS, installed_encoders

    rows = []
    for info in installed_encoders():
        cls = ENCODERS.get(info.name) if info.error is None else None
        rows.append({
            "name": info.name,
            "class": info.source.reference,
            "distribution": info.source.distribution,
            "version": info.source.version,
            "builtin": info.builtin,
            "entry_point": info.source.entry_point,
            "pretrained": info.pretrained,
            "feature_dim": None if cls is None else _default_feature_dim(cls),
            "error": info.error,
        })
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from tabulate import tabulate

    print(tabulate([[r["name"], r["class"], f"{r['distribution']} {r['version']}",
                     {True: "yes", False: "no", None: "?"}[r["pretrained"]],
                     r["feature_dim"] or "-", r["error"] or ""] for r in rows],
                   headers=["name", "class", "from", "pretrained", "feature_dim", "error"]))
    return 0


def add_commands(sub) -> None:
    p = add_command(sub, "train", cmd_train,
                    "train a policy on demonstrations",
                    "aem-bench train --demos runs/shell/demos.h5 --out runs/shell/sf-dp --steps 2000")
    p.add_argument("--policy", default="singleframe-dp",
                   help="a zoo policy name (see `aem-bench policies`)")
    p.add_argument("--demos", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", help='JSON of config overrides, e.g. \'{"num_inference_steps": 5}\'')
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--save-every", type=int, default=500, help="checkpoint every N steps")
    p.add_argument("--resume", action="store_true",
                   help="continue the run saved in --out (same policy and settings)")
    p.add_argument("--overwrite", action="store_true", help="replace the checkpoint in --out "
                   "and remove its evaluations (--out/eval)")
    p.add_argument("--ablation", help="aem-dp/aem-flow: an AEM ablation's policy settings "
                   "(full, no-actions, no-pretraining, memory-only, feature-add, mask-0.5, "
                   "mask-0.9)")

    p = add_command(sub, "pretrain", cmd_pretrain,
                    "AEM pretraining (action-effect memory) on demonstrations",
                    "aem-bench pretrain --demos runs/shell/demos.h5 --out runs/shell/aem")
    p.add_argument("--demos", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", help='JSON of AEMConfig overrides, e.g. \'{"mask_ratio": 0.5}\'')
    p.add_argument("--threads", type=int, help="torch threads (default: every CPU allowed)")
    p.add_argument("--save-every", type=int, default=500, help="checkpoint every N steps")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument("--overwrite", action="store_true", help="replace the checkpoint in --out")
    p.add_argument("--ablation", help="an AEM ablation's pretraining settings (see train)")

    p = add_command(sub, "policies", cmd_policies,
                    "list the policy zoo: encoder, head, horizons",
                    "aem-bench policies")
    p.add_argument("--json", action="store_true")

    p = add_command(sub, "encoders", cmd_encoders,
                    "list the built-in encoders and those packages installed",
                    "aem-bench encoders --json",
                    description="list built-in encoders and those installed by packages "
                    "(entry-point group aem_bench.encoders)")
    p.add_argument("--json", action="store_true")
