"""The episode log: finished episodes on disk, so that a killed evaluation resumes.

What lives here: :class:`EpisodeLog` (an append-only JSONL file of :class:`EpisodeRecord`) and
:func:`checkpoint_digest`, the fingerprint of a checkpoint that a log's header carries so that
only an evaluation of the very same weights resumes it. It imports the episode module and the
standard library only; it never loads a checkpoint (the digest hashes its files as bytes), so it
needs neither torch nor the policy zoo.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from aem_bench.errors import InputError
from aem_bench.evaluator.episode import EpisodeRecord


class EpisodeLog:
    """An append-only JSONL file of finished episodes, so that a killed evaluation resumes.

    The first line names the run (task, environment kwargs, policy, seeds); every other line is
    one :class:`EpisodeRecord`, written and flushed to disk as the episode ends (the file is made
    with the first episode: a run that stops before leaves none). Reopening the log of the same
    run returns the episodes already done; a log of another run (another checkpoint, when the
    header has its ``checkpoint_digest``) is refused. A last line cut short by a kill is dropped
    (that episode runs again); any other bad line is an error naming the line.
    """

    def __init__(self, path: str | os.PathLike, header: dict):
        self.path = Path(path)
        self.done: dict[int, EpisodeRecord] = {}
        self._header: dict | None = header
        if self.path.is_file() and self.path.stat().st_size:
            self._read(header)
            self._header = None

    def _read(self, header: dict) -> None:
        lines = self.path.read_text().splitlines()
        parsed = []
        for number, line in enumerate(lines, start=1):
            try:
                parsed.append(json.loads(line))
            except json.JSONDecodeError:
                if number < len(lines):
                    raise InputError(f"{self.path}:{number}: not a JSON line; the episode log is "
                                     "corrupt (move it away to start over)") from None
                # The last line, cut short by a kill: drop it, its episode runs again.
                self.path.write_text("".join(line + "\n" for line in lines[:-1]))
        found = parsed[0].get("header") if parsed else None
        if (isinstance(found, dict) and "checkpoint_digest" in header
                and found.get("checkpoint_digest") != header["checkpoint_digest"]):
            raise InputError(f"{self.path} holds episodes of another checkpoint (digest "
                             f"{str(found.get('checkpoint_digest'))[:12]}, this one "
                             f"{header['checkpoint_digest'][:12]}): remove it to evaluate this "
                             "checkpoint afresh, or pass another --log")
        wanted = json.loads(json.dumps(header))
        if not _same_run(found, wanted):
            raise InputError(f"{self.path} is the log of another evaluation ({found}), not of "
                             f"{header}: pass another --log or remove it")
        if len(wanted["seeds"]) > len(found["seeds"]):  # more episodes of the same run
            lines[0] = json.dumps({"header": header})
            self.path.write_text("".join(line + "\n" for line in lines[:len(parsed)]))
        for number, entry in enumerate(parsed[1:], start=2):
            try:
                record = EpisodeRecord(**entry)
            except TypeError as err:
                raise InputError(f"{self.path}:{number}: not an episode record: {err}") from None
            self.done[record.seed] = record

    def append(self, record: EpisodeRecord) -> None:
        if self._header is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"header": self._header}) + "\n")
            self._header = None
        with open(self.path, "a") as f:
            f.write(json.dumps(record.to_log(), allow_nan=False) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _same_run(found, wanted: dict) -> bool:
    """Whether a log's header ``found`` is of the run ``wanted`` or of the same run with more or
    fewer episodes (one list of seeds the start of the other)."""
    if not isinstance(found, dict) or not isinstance(found.get("seeds"), list):
        return False
    if {**found, "seeds": None} != {**wanted, "seeds": None}:
        return False
    shorter, longer = sorted((found["seeds"], wanted["seeds"]), key=len)
    return longer[:len(shorter)] == shorter


def checkpoint_digest(directory: str | os.PathLike) -> str:
    """SHA-256 of a checkpoint's ``config.json`` and ``model.safetensors``: which model it is."""
    digest = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        digest.update(name.encode() + b"\0")
        with open(Path(directory) / name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
