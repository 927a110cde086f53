"""The ``aem-bench`` command line: one module per group of commands, over the library.

``data`` (tasks, gallery, expert, demos), ``training`` (train, pretrain, policies, encoders),
``evaluation`` (eval, certify, probe, body-leak) and ``leaderboard`` (leaderboard, pipeline,
submit, sweep) each declare their commands' arguments in ``add_commands`` and run each command in
a ``cmd_*`` function: its arguments checked (``common``, or a ``_check_*`` helper beside it), then
the library's functions, then what to print; a few lines each (``tests/test_thin_cli.py``). :func:`main` turns aem-bench's own errors into one line and an exit code. The top
layer: it may import every layer, lazily, inside the commands, so that ``aem-bench --help`` and
``aem-bench leaderboard`` load neither torch nor the simulator; nothing imports it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

# Before torch is imported: OpenMP workers that spin-wait at barriers stall badly (seconds per
# training step) when anything else, the CPU renderer included, wants the same cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from aem_bench.cli import data, evaluation, leaderboard, training
from aem_bench.errors import EvaluationError, InputError, UsageError

GROUPS = (data, training, evaluation, leaderboard)

# Bad input: an argument refused (UsageError), or a file it named found damaged, of another run
# or not fitting while reading it (InputError: CheckpointError, DemoFileError, ResultsFileError,
# MissingWeightsError...). One clear line, not a traceback; any other exception, a ValueError
# included, is a bug's and shows one.
BAD_INPUT = (UsageError, InputError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aem-bench",
        formatter_class=lambda prog: argparse.RawTextHelpFormatter(prog, max_help_position=18),
        description="Robot manipulation under partial observability: tasks, expert "
        "demonstrations,\ntraining, evaluation and the leaderboard.",
        epilog="`aem-bench COMMAND --help` lists a command's options.")
    sub = parser.add_subparsers(dest="command", required=True, title="commands",
                                metavar="COMMAND")
    for group in GROUPS:
        group.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The command as a reader reruns it, for the records a command writes.
    args.command_line = "aem-bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args)
    except EvaluationError as err:
        # Episodes finished before are in the episode log; the message says how to resume.
        print(f"aem-bench {args.command}: stopped: {err}", file=sys.stderr)
        return 1
    except BAD_INPUT as err:
        print(f"aem-bench {args.command}: error: {err}", file=sys.stderr)
        return 2
