"""StackBlocksThree: stack the green cube on the red one, then the blue cube on the green one.

After RoboTwin 2.0's ``stack_blocks_three``. Three 5 cm cubes, red, green and blue, start at
random places and yaws on the table. Success (as RoboTwin): green rests on red and blue on green
(each centre within 2.5 cm in xy of the one below, one cube height higher within 1 cm), both
grippers open and no cube held.

Each cube is carried by the arm on its side; see ``CubeStackEnv`` in ``_blocks.py``.
"""

from __future__ import annotations

from aem_bench.registration import register_task

from ._blocks import CubeStackEnv

RED, GREEN, BLUE = (0.85, 0.1, 0.1), (0.1, 0.7, 0.15), (0.1, 0.25, 0.9)


@register_task("AEM/StackBlocksThree-v0", max_episode_steps=600, arms=2,
               skills=("pick", "place", "stack"))
class StackBlocksThreeEnv(CubeStackEnv):
    """Stack green on red, then blue on green."""

    CUBES = (("red", RED), ("green", GREEN), ("blue", BLUE))
