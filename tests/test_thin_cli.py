"""The CLI stays thin: each command parses its flags, calls library functions and prints. Work
that grows a command belongs in the library (or, for argument checks, in a helper beside it)."""

from __future__ import annotations

import ast
from pathlib import Path

CLI = Path(__file__).resolve().parent.parent / "aem_bench" / "cli"
MOST_LINES = 30  # of a command function, from its `def` to its last line


def command_lengths() -> dict[str, int]:
    lengths = {}
    for source in sorted(CLI.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("cmd_"):
                lengths[f"{source.name}:{node.name}"] = node.end_lineno - node.lineno + 1
    return lengths


def test_every_command_is_a_few_lines_over_the_library():
    lengths = command_lengths()
    assert len(lengths) >= 10, "the commands were not found"
    assert {name: n for name, n in lengths.items() if n > MOST_LINES} == {}

