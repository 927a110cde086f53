"""Evaluate a policy on an AEM task: success rate with a Wilson interval, policy latency, provenance.

Usage::

    report = evaluate(policy, "AEM/HandoverBlock-v0", episodes=100)
    write_report(report, "leaderboard/results/my_policy.json")

Episodes run on the first ``episodes`` seeds from ``seed`` that the scripted expert solves (RoboTwin
2.0's protocol), the same seed for the environment and the policy, so two policies evaluated with
the same ``seed`` and ``episodes`` face exactly the same initial states. The JSON that
:func:`write_report` writes is a valid leaderboard results file (see ``aem_bench.leaderboard.results``).

The package, one idea per module, each importing only the ones listed before it:
``episode`` (the Policy protocol, one episode and its record), ``log`` (the episode log that
resumes a killed run), ``report`` (the report, its results file and provenance), ``backends``
(where episodes run: this process, a process pool, Ray actors) and ``protocol`` (``evaluate``).
The evaluator sits above the tasks (it makes them by id) and below what uses it: it may import the
foundations (``errors``, ``seeds``, ``stats``, ``progress``, ``provenance``, ``media``, ``demos``,
``registration``) and ``aem_bench.expert``; it never imports the policy zoo, the leaderboard or
the command line; evaluating a zoo checkpoint is ``aem_bench.checkpoint_eval``'s.
"""

from aem_bench.evaluator.backends import (
    Backend,
    InlineBackend,
    ProcessPoolBackend,
    RayBackend,
    make_backend,
)
from aem_bench.evaluator.episode import (
    ENVIRONMENT_CRASHED,
    EpisodeRecord,
    EvaluationError,
    Policy,
    invalid_action,
    run_episode,
)
from aem_bench.evaluator.log import EpisodeLog, checkpoint_digest
from aem_bench.evaluator.protocol import evaluate
from aem_bench.evaluator.report import EvalReport, collect_provenance, write_report
from aem_bench.stats import wilson_interval  # where results' intervals come from, for callers

__all__ = [
    "ENVIRONMENT_CRASHED",
    "Backend",
    "EpisodeLog",
    "EpisodeRecord",
    "EvalReport",
    "EvaluationError",
    "InlineBackend",
    "Policy",
    "ProcessPoolBackend",
    "RayBackend",
    "checkpoint_digest",
    "collect_provenance",
    "evaluate",
    "invalid_action",
    "make_backend",
    "run_episode",
    "wilson_interval",
    "write_report",
]
