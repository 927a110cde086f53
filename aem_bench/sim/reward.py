"""Shaping terms shared by the tasks' dense rewards."""

from __future__ import annotations

import numpy as np


def closeness(a, b, sharpness: float = 5.0) -> float:
    """1 at ``a == b``, falling towards 0 with distance (about 0.24 at 20 cm): the reaching
    term of ManiSkill-style staged rewards."""
    return float(1.0 - np.tanh(sharpness * np.linalg.norm(np.asarray(a) - np.asarray(b))))
