"""aem-bench's own errors: bad input, which the command line reports in one line with exit code
2, and an evaluation that stopped, which it reports with exit code 1.

They live here, below every layer, so that the command line can catch them by type without
importing what raises them (the evaluator imports the tasks, and with them the simulator).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UsageError(ValueError):
    """An argument, or a combination of them, refused before any work starts.

    A ValueError too, so that code catching bad values keeps catching it; the command line catches
    it by type, so that a ValueError from a bug is not mistaken for the user's."""

    def __init__(self, argument: str, message: str):
        super().__init__(f"{argument}: {message}")
        self.argument = argument


def bad_value(argument: str, value: object, expected: str) -> UsageError:
    """``--arg: bad value 'X'; expected ...``."""
    return UsageError(argument, f"bad value {str(value)!r}; expected {expected}")


def closest(word: str, choices: Iterable[str], count: int = 3) -> list[str]:
    """The choices that look most like ``word`` (a typo, a missing namespace), best first."""
    choices = list(choices)
    # A name without its namespace ("HandoverBlock-v0") is the likeliest slip: named first.
    namespaced = [choice for choice in choices if choice.lower().endswith("/" + word.lower())]
    close = difflib.get_close_matches(word, choices, n=count, cutoff=0.5)
    return list(dict.fromkeys(namespaced + close))[:count]


class EvaluationError(RuntimeError):
    """An evaluation stopped before its last episode (the policy raised, a worker died). The
    episodes finished before are in the episode log, and rerunning resumes after them."""
