"""`make test-slow` selects tests by the ``slow`` marker: it must select some, and `make test`
(what CI runs) must still run them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _is_slow_mark(node: ast.expr) -> bool:
    return ast.unparse(node) == "pytest.mark.slow"


def test_some_tests_are_marked_slow_and_make_test_still_runs_them():
    slow = [f"{path.name}::{node.name}"
            for path in sorted((ROOT / "tests").glob("test_*.py"))
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.FunctionDef) and any(map(_is_slow_mark, node.decorator_list))]
    # pytest exits with 5 when a marker selects nothing, which made `make test-slow` fail.
    assert slow, "no test carries @pytest.mark.slow"

    recipes = re.findall(r"^(test[\w-]*):.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.MULTILINE)
    recipes = dict(recipes)
    assert "-m slow" in recipes["test-slow"]
    assert not re.search(r"-m\s+[\"']?(not\b|slow)", recipes["test"]), \
        "make test must not deselect the slow tests"

    pyproject = (ROOT / "pyproject.toml").read_text()
    assert "--strict-markers" in pyproject and '"slow:' in pyproject
