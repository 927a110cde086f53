"""StackBlocksTwo: stack the green cube on the red one.

After RoboTwin 2.0's ``stack_blocks_two``. Two 5 cm cubes, red and green, start at random
places and yaws on the table. Success (as RoboTwin): the green cube rests on the red one (centres
within 2.5 cm in xy, green 5 cm higher within 1 cm), both grippers open and neither cube held.

The expert uses the arm on the green cube's side; see ``CubeStackEnv`` in ``_blocks.py``.
"""

from __future__ import annotations

from aem_bench.registration import register_task

from ._blocks import CubeStackEnv

RED, GREEN = (0.85, 0.1, 0.1), (0.1, 0.7, 0.15)


@register_task("AEM/StackBlocksTwo-v0", max_episode_steps=400, arms=2,
               skills=("pick", "place", "stack"))
class StackBlocksTwoEnv(CubeStackEnv):
    """Stack the green cube on the red cube."""

    CUBES = (("red", RED), ("green", GREEN))
