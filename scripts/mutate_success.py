"""Mutation run over the tasks' success checks: ``make mutate-success`` (not part of CI).

For every ``evaluate()`` in ``tasks/*.py`` whose returned dict's ``"success"`` is an ``and`` of
clauses, each clause is removed in turn (found and cut by the AST, the rest of the file kept
verbatim), and the near-miss tests of the tasks that use that ``evaluate()`` are run
(``tests/test_success_clauses.py``). A mutant the tests still pass survives: no near miss
guards that clause. The file is restored after each mutant, also on an error or Ctrl-C.

    python scripts/mutate_success.py [--task-file tasks/open_drawer.py ...]

Exit status 0 when every mutant is killed, 1 when some survive, 2 on bad input.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST_FILE = "tests/test_success_clauses.py"


@dataclass
class Mutant:
    path: Path
    line: int  # the evaluate()'s first line
    clause: str  # the source text removed
    source: str  # the whole mutated file


def success_conjunctions(source: str):
    """``(evaluate FunctionDef, BoolOp)`` for each evaluate() returning {"success": a and b...}."""
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.FunctionDef) and node.name == "evaluate"):
            continue
        for inner in ast.walk(node):
            if not isinstance(inner, ast.Dict):
                continue
            for key, value in zip(inner.keys, inner.values):
                if (isinstance(key, ast.Constant) and key.value == "success"
                        and isinstance(value, ast.BoolOp) and isinstance(value.op, ast.And)):
                    yield node, value


def _offset(source: str, line: int, column: int) -> int:
    """Character offset of an AST (line, UTF-8 byte column) position."""
    lines = source.splitlines(keepends=True)
    start = sum(len(text) for text in lines[: line - 1])
    return start + len(lines[line - 1].encode()[:column].decode())


def mutants(path: Path) -> list[Mutant]:
    source = path.read_text()
    found = []
    for function, conjunction in success_conjunctions(source):
        start = _offset(source, conjunction.lineno, conjunction.col_offset)
        end = _offset(source, conjunction.end_lineno, conjunction.end_col_offset)
        clauses = [ast.get_source_segment(source, value) for value in conjunction.values]
        for i, clause in enumerate(clauses):
            kept = " and ".join(f"({text})" for j, text in enumerate(clauses) if j != i)
            found.append(Mutant(path, function.lineno, " ".join(clause.split()),
                                source[:start] + f"({kept})" + source[end:]))
    return found


def tasks_using(path: Path, line: int) -> list[str]:
    """Short names of the registered tasks (clean scene) whose evaluate() is this one."""
    import gymnasium as gym

    from aem_bench.registration import TASKS

    names = []
    for env_id, spec in TASKS.items():
        if spec.scene != "clean":
            continue
        cls = gym.envs.registration.load_env_creator(spec.entry_point)
        function = inspect.unwrap(cls.evaluate)
        if (Path(inspect.getsourcefile(function)).resolve() == path.resolve()
                and function.__code__.co_firstlineno == line):
            names.append(env_id.split("/")[-1])
    return sorted(names)


def run_tests(names: list[str]) -> tuple[int, list[str]]:
    """The pytest exit status of the near-miss tests of these tasks (5: none selected) and the
    parameters of the tests that failed."""
    command = [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", TEST_FILE,
               "-k", " or ".join(names)]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    failed = [line.split("[", 1)[-1].split("]", 1)[0] for line in run.stdout.splitlines()
              if line.startswith("FAILED ")]
    return run.returncode, failed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task-file", action="append", type=Path,
                        help="a task module to mutate (repeatable); default: all of tasks/")
    args = parser.parse_args(argv)
    files = [path.resolve() for path in args.task_file or sorted((ROOT / "tasks").glob("*.py"))]
    for path in files:
        if not path.is_file():
            print(f"--task-file: no such file {path}", file=sys.stderr)
            return 2
    survivors = []
    for path in files:
        original = path.read_text()
        for mutant in mutants(path):
            names = tasks_using(path, mutant.line)
            label = f"{path.relative_to(ROOT)}:{mutant.line} without {mutant.clause!r}"
            if not names:
                print(f"{label}: no registered task uses it", file=sys.stderr)
                return 2
            try:
                path.write_text(mutant.source)
                status, failed = run_tests(names)
            finally:
                path.write_text(original)
            verdict = {0: "SURVIVED", 1: f"killed by {', '.join(failed)}",
                       5: "SURVIVED (no test selected)"}.get(status,
                                                             f"error (pytest exit {status})")
            print(f"{label} [{', '.join(names)}]: {verdict}", flush=True)
            if verdict.startswith("SURVIVED"):
                survivors.append(label)
            elif verdict.startswith("error"):
                return 2
    print(f"\n{len(survivors)} surviving mutant(s)")
    for label in survivors:
        print(f"  {label}")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
