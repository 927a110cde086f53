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
    shares_cells_with: tuple[str, ...] = field(default=(), metadata={
        "doc": "named protocols whose cells are this one's wherever the two make a task's cells "
               "the same way (:meth:`home`), so that nothing is trained twice"})

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

    def cell_recipe(self, task: str) -> dict:
        """Everything that makes a cell of ``task`` under this protocol, whichever protocol it
        is: two protocols with the same recipe for a task make the same cells of it."""
        demos, steps = self.budget(task)
        return {"task": task, "demos": demos, "train_steps": steps,
                **{name: getattr(self, name) for name in CELL_FIELDS}}

    def home(self, task: str) -> Protocol:
        """The protocol whose cells of ``task`` this one's are: the first of
        ``shares_cells_with`` that has ``task`` with the same :meth:`cell_recipe`, else this
        one. Its name is in the cells' cache folder and results files, so a cell made under
        either protocol is found done by both."""
        for name in self.shares_cells_with:
            other = get_protocol(name)
            if task in other.tasks and other.cell_recipe(task) == self.cell_recipe(task):
                return other
        return self

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
                "budgets": [list(budget) for budget in self.budgets],
                "shares_cells_with": list(self.shares_cells_with)}

    @classmethod
    def from_dict(cls, recorded: dict) -> Protocol:
        """The protocol a results file records (``to_dict``), fields added since defaulted."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in recorded.items() if key in known}
        for key in ("tasks", "scenes", "shares_cells_with"):
            if key in values:
                values[key] = tuple(values[key])
        values["budgets"] = tuple(tuple(budget) for budget in values.get("budgets", ()))
        return cls(**values)


# The fields besides the task's budget that make its cells (Protocol.cell_recipe): not the name,
# the task list, the scenes (each cell has its own) or the policy a submitted encoder goes into
# (each cell has its row).
CELL_FIELDS = ("camera", "demo_seed", "batch_size", "train_seed", "eval_episodes", "eval_seed",
               "threads", "corpus_episodes", "corpus_seed", "pretrain_steps", "policy_suffix")


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


def standard_protocol() -> Protocol:
    """The leaderboard's protocol: every task of both suites (their current versions), one
    recipe, for the zoo and for submitted encoders alike.

    - Demonstrations: RoboTwin 2.0's 50 clean expert demonstrations per task, 64x64 camera.
    - Training: 2,000 steps of batch 64, seed 0, one torch thread. Chosen by cost: each cell of
      the matrix trains on one core in 5-15 minutes, so that the zoo's matrix fits about 15
      core-hours of these 2-core machines. It undertrains the slower manipulation tasks
      (single-frame DP on HandoverBlock: 94% of 50 episodes at 6,000 steps, 38% at 2,000), the
      same for every policy.
    - A memory task is trained at its certificate's budget instead (its demonstrations and steps,
      ``tasks/memory_certificates.json``): the budget at which the single-frame DP with the
      oracle succeeds and without it does not, so that a memory standing in for the oracle can
      show. Those cells are the ``certificate-budget`` protocol's (``shares_cells_with``):
      made once, found done by both.
    - AEM pretraining: 300 further expert episodes from seed 2000, 1,000 steps.
    - Evaluation: 100 expert-solvable seeds from 100000 (RoboTwin 2.0's and RMBench's count), in
      the clean and the randomized scene.
    """
    from aem_bench.registration import current_tasks

    memory = certificate_protocol()
    suites = current_tasks()
    manipulation = sorted(task for task, spec in suites.items()
                          if spec.memory is None and spec.scene == "clean")
    memory_tasks = sorted(task for task in memory.tasks if task in suites)
    return Protocol(name="standard", tasks=(*manipulation, *memory_tasks), demos=50,
                    train_steps=2000, batch_size=64, eval_episodes=100,
                    scenes=("clean", "randomized"),
                    budgets=tuple((task, *memory.budget(task)) for task in memory_tasks),
                    shares_cells_with=("certificate-budget",))


def certificate_protocol() -> Protocol:
    """The memory suite at each task's certificate budget (``tasks/memory_certificates.json``):
    the demonstrations and training steps at which the single-frame DP with the oracle succeeds
    and without it does not, so a memory that stands in for the oracle shows. A memory task of the
    suite without a certificate yet that supersedes one with a certificate (a new version, e.g.
    SwapBlocks-v1 of v0) comes in at its predecessor's budget (:func:`inherited_budgets`). 64x64
    camera, batch 64, 100 evaluation episodes from seed 100000 in the clean scene (as RoboTwin 2.0
    and RMBench report)."""
    import sys

    # Read without importing aem_bench.certify (it imports the simulator), unless it is loaded.
    certify = sys.modules.get("aem_bench.certify")
    if certify is not None:
        load_certificates = certify.load_certificates
    else:
        from pathlib import Path

        from aem_bench import tasks
        from aem_bench.registration import read_package_table

        def load_certificates():
            return read_package_table(
                Path(tasks.__file__).resolve().parent / "memory_certificates.json")

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


PROTOCOLS = {protocol.name: protocol for protocol in (SMOKE, DEMO)}
# Protocols built when asked for, from the task registry and the recorded certificates.
BUILT = {"standard": standard_protocol, "certificate-budget": certificate_protocol}


def get_protocol(name: str) -> Protocol:
    if name in BUILT:
        return BUILT[name]()
    if name not in PROTOCOLS:
        raise UsageError("protocol", f"unknown protocol '{name}'; protocols: {protocol_names()}")
    return PROTOCOLS[name]


def protocol_names() -> list[str]:
    return sorted([*PROTOCOLS, *BUILT])
