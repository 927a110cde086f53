"""aem-bench's own errors: bad input (an argument refused, or a file it named found unusable),
which the command line reports in one line with exit code 2, and a run of episodes that stopped,
which it reports with exit code 1. Any other exception is a bug's, and shows its traceback.

They live here, below every layer, so that the command line can catch them by type without
importing what raises them (the evaluator imports the tasks, and with them the simulator).
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Iterable


class UsageError(ValueError):
    """An argument, or a combination of them, refused: by the command line before any work
    starts (``argument`` is the flag), or by a library function (its parameter, or the config
    field).

    A ValueError too, so that code catching bad values keeps catching it; the command line catches
    it by type, so that a ValueError from a bug is not mistaken for the user's."""

    def __init__(self, argument: str, message: str):
        super().__init__(f"{argument}: {message}")
        self.argument = argument
        self.message = message

    def __reduce__(self):  # rebuilt from both parts when it crosses to another process
        return type(self), (self.argument, self.message)


class InputError(ValueError):
    """A file or folder an argument named, found unusable once read: damaged, of another kind or
    another run (a checkpoint, an episode log, a results folder), or not fitting what it is used
    with (demonstrations of another image size); or an encoder package that does not load.

    Raised where the file is read, which knows the file (the message names it) but not the
    argument that named it. A ValueError too, like :class:`UsageError`."""


def read_json(path: str | os.PathLike, recover: str):
    """The JSON in the file ``path`` (one a user named, or a previous run left), or an
    :class:`InputError` naming it and what is wrong (unreadable, not UTF-8, not JSON: cut short by
    a kill, or garbage) followed by ``recover``, what to do about it ("move it away to start
    afresh"). A missing file is the caller's to check first: it raises the same way."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; {recover}") from None
    except OSError as err:
        raise InputError(f"{path}: cannot be read ({err.strerror}); {recover}") from None
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: damaged (not text: {err.reason}); {recover}") from None
    except json.JSONDecodeError as err:
        # At the end of the text, or in a string still open there: a file cut short by a kill.
        cut = err.pos >= len(err.doc.rstrip()) or err.msg.startswith("Unterminated string")
        problem = "cut short" if cut else "not JSON"
        raise InputError(f"{path}: damaged ({problem}: {err}); {recover}") from None


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
    """A run of episodes stopped before its last one: an evaluation whose policy raised or whose
    worker died (the episodes finished before are in the episode log, and rerunning resumes
    after them), or an expert that solved fewer seeds than were asked for
    (:class:`aem_bench.expert.ExpertShortfall`)."""
