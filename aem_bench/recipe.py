"""Protocols: one typed recipe for making a result, shared by `submit` and `sweep`.

A protocol fixes everything a compared method does not choose: the demonstrations (tasks, count,
seeds, camera), the training budget and seed, the AEM pretraining corpus and budget, and the
evaluation (episodes, seeds, scenes). Two results made under one protocol differ only in the
policy. Named protocols live in :data:`PROTOCOLS`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from aem_bench.errors import UsageError
from aem_bench.seeds import EVAL_SEED_START


@dataclass(frozen=True)
class Protocol:
    """Everything a compared method does not choose.

    Demonstrations: the expert's first ``demos`` successful episodes from seed ``demo_seed`` on
    (at most ``2 * demos + 10`` seeds tried), recorded with a ``camera`` x ``camera`` camera in the
    clean scene (a memory task's with its oracle alongside, which only an oracle policy reads).
    Training: for ``train_steps`` steps of ``batch_size`` samples, seeded with ``train_seed``
    (zoo policy ``policy`` for a submitted encoder). ``budgets`` overrides ``demos`` and
    ``train_steps`` per task: ``(task, demos, train_steps)`` triples. AEM pretraining: on
    ``corpus_episodes`` further expert episodes from ``corpus_seed`` on, for ``pretrain_steps``
    steps. Evaluation: ``eval_episodes`` expert-solvable seeds from ``eval_seed`` on, in each of
    ``scenes``. ``threads`` torch threads throughout, so that latencies compare.
    """

    name: str = field(metadata={"doc": "the protocol's name, which its cache and results carry"})
    tasks: tuple[str, ...] = field(metadata={"doc": "clean task ids"})
    demos: int = field(metadata={"doc": "demonstrations per task"})
    train_steps: int = field(metadata={"doc": "training steps"})
    batch_size: int = field(metadata={"doc": "samples per training step"})
    eval_episodes: int = field(metadata={"doc": "evaluation episodes per task and scene"})
    camera: int = field(default=64, metadata={"doc": "the camera's side (pixels)"})
    demo_seed: int = field(default=0, metadata={"doc": "the first demonstration seed"})
    policy: str = field(default="singleframe-dp",
                        metadata={"doc": "the zoo policy a submitted encoder is trained in"})
    train_seed: int = field(default=0, metadata={"doc": "the training seed"})
    eval_seed: int = field(default=EVAL_SEED_START,
                           metadata={"doc": "the first evaluation seed"})
    threads: int = field(default=1, metadata={"doc": "torch threads"})
    scenes: tuple[str, ...] = field(default=("clean",),
                                    metadata={"doc": "the scenes evaluated in"})
    corpus_episodes: int = field(default=300,
                                 metadata={"doc": "expert episodes of the AEM pretraining corpus"})
    corpus_seed: int = field(default=2000, metadata={"doc": "the corpus's first seed"})
    pretrain_steps: int = field(default=1000, metadata={"doc": "AEM pretraining steps"})
    budgets: tuple[tuple[str, int, int], ...] = field(
        default=(), metadata={"doc": "(task, demos, train_steps) overrides per task"})
    policy_suffix: str = field(default="", metadata={
        "doc": "appended to each row's name in the results files of a variant of a named "
               "protocol, so that the leaderboard keeps the variant's results in rows of their own"})

    @property
    def head(self) -> str:
        """The zoo head name ("dp", "flow") the results file reports."""
        return self.policy.rsplit("-", 1)[-1]

    def budget(self, task: str) -> tuple[int, int]:
        """(demonstrations, training steps) for ``task``."""
        for name, demos, steps in self.budgets:
            if name == task:
                return demos, steps
        return self.demos, self.train_steps

    def with_demos(self, demos: int) -> Protocol:
        """This protocol with ``demos`` demonstrations of every task and nothing else changed,
        named apart (``NAME-{demos}demos``) so that its cache and results files do not mix with
        this one's. The demonstrations are the first ``demos`` from the same seed, so a smaller
        set is the start of a larger one."""
        if demos < 1:
            raise ValueError(f"demos must be at least 1, got {demos}")
        return replace(self, name=f"{self.name}-{demos}demos", demos=demos,
                       budgets=tuple((task, demos, steps) for task, _, steps in self.budgets),
                       policy_suffix=f"{self.policy_suffix}-{demos}demos")

    def to_dict(self) -> dict:
        return {**asdict(self), "tasks": list(self.tasks), "scenes": list(self.scenes),
                "budgets": [list(budget) for budget in self.budgets]}


def protocol_field(name: str) -> tuple[type, str]:
    """The type and documentation of the :class:`Protocol` field ``name``, for a command-line
    flag that sets it."""
    types = {"int": int, "str": str}
    for found in fields(Protocol):
        if found.name == name:
            if found.type not in types:
                raise TypeError(f"Protocol.{name} is a {found.type}: not one value of a flag")
            return types[found.type], found.metadata["doc"]
    raise KeyError(f"Protocol has no field {name!r}")


# The leaderboard protocol of encoder submissions. Two bimanual block tasks: HandoverBlock, which
# the single-frame policy learns on a CPU, and PutBackBlock, a spatial memory task (chance 25%),
# where a per-frame encoder alone should stay near chance: it shows what an encoder's features
# do, and do not, carry. The budget is the memory certificates' (`aem-bench certify`: 50 demos,
# 64x64 camera, 2000 steps of 64, 50 episodes, one thread), so that a submission runs on one CPU
# core in well under an hour (the README's "Submitting an encoder" gives measured times). 50
# episodes give a 95% interval of about +-14 points: enough to tell a working encoder from a
# broken one, not 5 points apart.
STANDARD = Protocol(
    name="standard",
    tasks=("AEM/HandoverBlock-v0", "AEM/PutBackBlock-v0"),
    demos=50,
    train_steps=2000,
    batch_size=64,
    eval_episodes=50,
)
# A plumbing check that takes about a minute: does the package install, import, train and
# evaluate? Its success rate means nothing. ClickBell is the shortest task (100 steps).
SMOKE = Protocol(
    name="smoke",
    tasks=("AEM/ClickBell-v1",),
    demos=2,
    train_steps=5,
    batch_size=8,
    eval_episodes=1,
    corpus_episodes=2,
    pretrain_steps=2,
)

# `make demo`: the suite's question on its smallest stage. ShellGame (the ball is seen until the
# cups come down, then only memory says where it is) with a single-frame DP and a GRU memory over
# its frozen encoder, at the task's certificate budget, evaluated on 20 seeds.
DEMO = Protocol(
    name="demo",
    tasks=("AEM/ShellGame-v0",),
    demos=50,
    train_steps=2000,
    batch_size=64,
    eval_episodes=20,
)


def certificate_protocol() -> Protocol:
    """The memory suite at each task's certificate budget (``tasks/memory_certificates.json``):
    the demonstrations and training steps at which the single-frame DP with the oracle succeeds
    and without it does not, so a memory that stands in for the oracle shows. A memory task of the
    suite without a certificate yet that supersedes one with a certificate (a new version, e.g.
    SwapBlocks-v1 of v0) comes in at its predecessor's budget (:func:`inherited_budgets`). 64x64
    camera, batch 64, 100 evaluation episodes from seed 100000 in the clean scene (as RoboTwin 2.0
    and RMBench report)."""
    from aem_bench.certify import load_certificates

    certified = {task: (entry["budget"]["demos"], entry["budget"]["train_steps"])
                 for task, entry in load_certificates().items()}
    budgets = tuple(sorted((task, *budget) for task, budget
                           in {**certified, **inherited_budgets(certified)}.items()))
    return Protocol(name="certificate-budget", tasks=tuple(task for task, *_ in budgets),
                    demos=50, train_steps=2000, batch_size=64, eval_episodes=100,
                    budgets=budgets)


def inherited_budgets(certified: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    """``{task: budget}`` for every clean memory task of the suite (none superseded) that has no
    budget in ``certified`` but supersedes, directly or through versions between, a task that has:
    the nearest such predecessor's budget. A new version keeps its predecessor's demonstrations
    and training steps until it is certified itself."""
    from aem_bench.registration import TASKS, current_tasks

    predecessor = {spec.superseded_by: env_id for env_id, spec in TASKS.items()
                   if spec.superseded_by is not None}
    inherited = {}
    for env_id, spec in current_tasks().items():
        if spec.memory is None or spec.scene != "clean" or env_id in certified:
            continue
        earlier, seen = predecessor.get(env_id), {env_id}
        while earlier is not None and earlier not in certified and earlier not in seen:
            seen.add(earlier)
            earlier = predecessor.get(earlier)
        if earlier in certified:
            inherited[env_id] = certified[earlier]
    return inherited


PROTOCOLS = {protocol.name: protocol for protocol in (STANDARD, SMOKE, DEMO)}


def get_protocol(name: str) -> Protocol:
    if name == "certificate-budget":
        return certificate_protocol()
    if name not in PROTOCOLS:
        raise UsageError("protocol", f"unknown protocol '{name}'; protocols: "
                         f"{sorted([*PROTOCOLS, 'certificate-budget'])}")
    return PROTOCOLS[name]


def protocol_names() -> list[str]:
    return sorted([*PROTOCOLS, "certificate-budget"])
