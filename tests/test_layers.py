"""Layers that only point down: sim and tasks -> policies -> evaluation -> leaderboard and CLI.

Every module's imports are read from its source (the AST, so imports inside functions count: a
lazy import is still a dependency, only a later one), and the rules below are checked on the graph
they make, together with the absence of any import cycle among aem-bench's modules. Each folder
says what lives in it and what it may import: a package in its docstring, another folder in a
README.md; the README's layout names every folder.
"""

from __future__ import annotations

import ast
import subprocess
import tomllib
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@cache
def modules() -> dict[str, Path]:
    """Dotted name -> source file of every aem-bench module, with pyproject's package-dir mapping
    (tasks/ is aem_bench.tasks, and so on)."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_dir = setuptools["package-dir"]
    found = {}
    for package in setuptools["packages"]:
        # The nearest mapped ancestor decides where a package's folder is.
        mapped = max((p for p in package_dir if package == p or package.startswith(p + ".")),
                     key=len)
        folder = ROOT / package_dir[mapped] / Path(*package[len(mapped):].split(".")[1:])
        for source in folder.glob("*.py"):
            name = package if source.stem == "__init__" else f"{package}.{source.stem}"
            found[name] = source
    return found


def _owner(name: str) -> str | None:
    """The module that ``import name`` runs last: ``name`` itself, or the package holding a
    function or class called ``name``."""
    while name and name not in modules():
        name = name.rpartition(".")[0]
    return name or None


@cache
def imports() -> dict[str, frozenset[str]]:
    """Module -> the aem-bench modules it imports anywhere in its source."""
    graph = {}
    for name, source in modules().items():
        package = name if source.stem == "__init__" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.Import):
                targets.update(_owner(alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                for alias in node.names:  # `from package import module` imports the module
                    full = f"{base}.{alias.name}"
                    targets.add(full if full in modules() else _owner(base))
        graph[name] = frozenset(targets - {None, name})
    return graph


def _in(name: str, *prefixes: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def violations(importers: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(f"{module} imports {target}" for module, targets in imports().items()
                  if _in(module, *importers) for target in targets if _in(target, *forbidden))


ABOVE_POLICIES = ("aem_bench.evaluator", "aem_bench.leaderboard", "aem_bench.cli",
                  "aem_bench.sweep", "aem_bench.submit")
RULES = {
    "the simulator and the tasks sit below everything":
        (("aem_bench.tasks", "aem_bench.sim"), ("aem_bench.policies", *ABOVE_POLICIES)),
    "the policy zoo sits below evaluation and what uses it":
        (("aem_bench.policies",), ABOVE_POLICIES),
    "the evaluator runs any policy, so it does not import the zoo":
        (("aem_bench.evaluator",), ("aem_bench.policies",)),
    "the leaderboard is read by the CLI, never the other way":
        (("aem_bench.leaderboard",), ("aem_bench.cli",)),
    "the leaderboard reads results files and task metadata, so it starts no simulator":
        (("aem_bench.leaderboard",), ("aem_bench.sim", "aem_bench.tasks", "aem_bench.expert",
                                      "aem_bench.policies", "aem_bench.evaluator")),
}
# Below every layer: what any module may import without pulling in a simulator or torch.
FOUNDATIONS = ("aem_bench.errors", "aem_bench.seeds", "aem_bench.stats", "aem_bench.progress",
               "aem_bench.provenance", "aem_bench.media", "aem_bench.demos",
               "aem_bench.registration")


@pytest.mark.parametrize("rule", RULES)
def test_layers_point_down(rule):
    importers, forbidden = RULES[rule]
    assert violations(importers, forbidden) == []


def test_the_foundations_import_only_each_other():
    assert sorted(f"{module} imports {target}" for module in FOUNDATIONS
                  for target in imports()[module] if target not in FOUNDATIONS) == []


def cycles(graph: dict[str, frozenset[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in graph.get(module, ()):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while not component or component[-1] != module:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycles():
    assert cycles(imports()) == []


def test_the_graph_sees_every_kind_of_import():
    """The checks above would pass on a graph that misses imports: spot-check each kind."""
    graph = imports()
    assert {"aem_bench.tasks", "aem_bench.sim", "aem_bench.policies", "aem_bench.leaderboard",
            "aem_bench.evaluator.protocol", "aem_bench.cli"} <= set(modules())
    assert "aem_bench.evaluator" in graph["aem_bench.checkpoint_eval"]  # from package import name
    assert "aem_bench.policies" in graph["aem_bench.checkpoint_eval"]  # ... inside a function
    assert "aem_bench.tasks" in graph["aem_bench"]  # from package import module
    assert "aem_bench" in graph["aem_bench.expert"]  # import package
    assert "aem_bench.tasks._blocks" in graph["aem_bench.tasks.stack_blocks_three"]  # from .mod
    assert cycles({"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}),
                   "d": frozenset({"a"})}) == [["a", "b", "c"]]


def test_every_package_says_what_lives_there_and_what_it_may_import():
    packages = {name: source for name, source in modules().items() if source.stem == "__init__"}
    assert {"aem_bench", "aem_bench.sim", "aem_bench.tasks.maniskill"} <= set(packages)
    silent = sorted(name for name, source in packages.items()
                    if "import" not in (ast.get_docstring(ast.parse(source.read_text())) or ""))
    assert silent == [], "a package docstring says what lives there and what it may import"


def tracked_folders() -> set[str]:
    """The repository's top-level folders, as git knows them."""
    try:
        files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                               check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked folders are unknown")
    return {path.split("/")[0] for path in files if "/" in path}


def test_every_folder_of_code_without_a_package_has_a_readme():
    for folder in tracked_folders():
        if any((ROOT / folder).glob("*.py")) and not (ROOT / folder / "__init__.py").exists():
            assert (ROOT / folder / "README.md").is_file(), f"{folder}/ says nothing about itself"


def test_the_readme_layout_names_every_folder():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("\n## Layout\n", 1)[1].split("```\n")[1]
    named = {line.split()[0].rstrip("/") for line in block.splitlines()
             if line and not line[0].isspace()}
    assert named == tracked_folders()
