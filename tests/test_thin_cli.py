"""The CLI stays thin: each command parses its flags, calls library functions and prints. Work
that grows a command belongs in the library (or, for argument checks, in a helper beside it). A
flag that sets a field of the run recipe (``aem_bench.recipe.Protocol``) takes its type and help
from the field, so that the two cannot drift apart."""

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


def _subcommand(name: str):
    from aem_bench.cli import build_parser

    parser = build_parser()
    commands = next(action for action in parser._actions if action.dest == "command")
    return commands.choices[name]


def test_every_protocol_field_is_documented_for_its_flags():
    from dataclasses import fields

    from aem_bench.recipe import Protocol

    assert [f.name for f in fields(Protocol) if not f.metadata.get("doc")] == []


def test_flags_that_set_protocol_fields_take_type_and_help_from_the_recipe():
    from aem_bench.recipe import protocol_field

    for command, names in (("pipeline", ["demos", "train_steps", "batch_size", "eval_episodes"]),
                           ("sweep", ["demos"])):
        flags = {action.dest: action for action in _subcommand(command)._actions}
        for name in names:
            kind, doc = protocol_field(name)
            assert flags[name].type is kind and flags[name].help.startswith(doc), (command, name)
            assert flags[name].option_strings == [f"--{name.replace('_', '-')}"]
