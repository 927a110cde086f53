"""Progress bars in a log file: plain lines, not thousands of carriage-return redraws."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import tty
from pathlib import Path

from aem_bench.progress import progress_bar

BIN = Path(sys.executable).parent


def test_a_command_writing_to_a_file_logs_few_plain_lines(tmp_path):
    log = tmp_path / "stderr.log"
    tasks = ["AEM/HandoverBlock-v0", "AEM/StackBlocksTwo-v0"]
    with open(log, "w") as stderr:
        subprocess.run([BIN / "aem-bench", "tasks", "--measure", "--ids", *tasks, "--episodes",
                        "1", "--out", tmp_path / "rates.json"],
                       stderr=stderr, stdout=subprocess.DEVNULL, check=True, timeout=300)
    text = log.read_text()
    assert "\r" not in text  # tqdm alone writes ~10 here, in one line
    bar_lines = [line for line in text.splitlines() if line.startswith("experts:")]
    # The first and last draw; the tasks take seconds, well under the interval between lines.
    assert len(bar_lines) == 2, text
    assert "0/2" in bar_lines[0] and "2/2" in bar_lines[-1]


def test_updates_to_a_non_terminal_are_throttled():
    stream = io.StringIO()
    with progress_bar(total=5, desc="steps", file=stream) as bar:
        for _ in range(5):
            time.sleep(0.2)  # tqdm alone redraws every 0.1 s
            bar.update()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and len(lines) == 2
    assert lines[0].startswith("steps:") and "5/5" in lines[-1]


def test_a_terminal_keeps_the_redrawn_bar():
    reader, writer = os.openpty()
    tty.setraw(writer)  # else the terminal turns each "\n" into "\r\n"
    with open(writer, "w") as terminal, progress_bar(total=3, file=terminal) as bar:
        bar.update(3)
    drawn = os.read(reader, 10_000).decode()
    os.close(reader)
    assert "\r" in drawn and "3/3" in drawn
