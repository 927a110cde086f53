"""Where and with what a number was produced: the commit, the command, the machine, the versions.

Imported by every layer that writes a record (training, evaluation, probes), so it imports nothing
of aem-bench's own.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path


def git_commit() -> str | None:
    """The commit of the aem-bench checkout in use, or None outside a git checkout."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], check=False,
                                cwd=Path(__file__).resolve().parent, capture_output=True,
                                text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def command_line() -> str:
    """This process's command as a reader can rerun it (``aem-bench ...`` for the CLI)."""
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    return " ".join(shlex.quote(arg) for arg in [program, *sys.argv[1:]])
