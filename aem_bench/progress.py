"""Progress bars that stay readable in a log file.

On a terminal tqdm redraws one line in place with carriage returns. Sent to a file or a pipe the
same redraws pile up as one huge line of ``\\r``-joined fragments, ten a second. Every bar of the
package comes from :func:`progress_bar`, which keeps tqdm on a terminal and otherwise prints plain
newline-terminated lines, at most one every :data:`LOG_INTERVAL` seconds besides the first and
the last.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from tqdm import tqdm

# Long enough that an hour of training logs ~120 lines, short enough to see that a run is alive.
LOG_INTERVAL = 30.0

# Messages printed between bars without tearing a bar drawn on a terminal.
progress_write = tqdm.write


class _Lines:
    """The stream tqdm writes to when the real one is not a terminal: each redraw becomes a line,
    and the carriage returns and cursor moves that erase a bar are dropped."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    @property
    def encoding(self) -> str | None:  # tqdm draws Unicode blocks only if the stream can
        return getattr(self._stream, "encoding", None)

    def write(self, text: str) -> None:
        line = text.replace("\r", "").replace("\x1b[A", "").strip()
        if line:
            self._stream.write(line + "\n")

    def flush(self) -> None:
        self._stream.flush()


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_bar(iterable=None, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)`` on a terminal; to anything else, one plain line per update at
    most every :data:`LOG_INTERVAL` seconds (``mininterval``/``maxinterval`` given override)."""
    stream = kwargs.get("file") or sys.stderr
    if not _is_terminal(stream):
        kwargs["file"] = _Lines(stream)
        kwargs.setdefault("mininterval", LOG_INTERVAL)
        # tqdm's monitor thread redraws a bar idle for maxinterval (10 s by default).
        kwargs.setdefault("maxinterval", LOG_INTERVAL)
    return tqdm(iterable, **kwargs)
