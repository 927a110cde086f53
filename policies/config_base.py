"""What every model config of the zoo shares: a dataclass that round-trips through config.json."""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from typing import Self

from aem_bench.errors import UsageError


class JsonConfig:
    """Mixin for config dataclasses with ``image_size``, ``crop_size`` and ``encoder_options``.

    ``__post_init__`` brings fields to the form they read back from JSON (tuples stay tuples,
    dicts hold lists), so that a config equals its round trip, fills ``crop_size`` (None: 90% of
    the image side) and calls ``validate()``.
    """

    JSON_DICTS: tuple[str, ...] = ("encoder_options",)  # dict fields normalised through JSON

    def __post_init__(self) -> None:
        for f in fields(self):
            if isinstance(f.default, tuple):
                setattr(self, f.name, tuple(getattr(self, f.name)))
        if self.crop_size is None:
            self.crop_size = int(0.9 * min(self.image_size))
        for name in self.JSON_DICTS:
            if getattr(self, name) is not None:
                setattr(self, name, json.loads(json.dumps(getattr(self, name))))
        self.validate()

    def require(self, ok: bool, message: str) -> None:
        """Refuse a value (or a combination): the config's fields are its users' arguments."""
        if not ok:
            raise UsageError(type(self).__name__, message)

    def validate(self) -> None:
        raise NotImplementedError

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Self:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(cls.__name__, f"unknown keys {unknown}; known keys are "
                             f"{sorted(known)}")
        return cls(**data)
