"""BlocksRankingRGB: line up the red, green and blue cubes in that order, left to right.

After RoboTwin 2.0's ``blocks_ranking_rgb``. Three 5 cm cubes start at shuffled random places
off a line across the middle of the table (x = 0). Success: the cubes stand on that line (every
centre within 5 cm of x = 0 and within 2 cm of each other in x) in the order red, green, blue
from left to right as the head camera sees them (decreasing y), neighbours less than 3 cm apart,
all resting on the table, both grippers open and no cube held. RoboTwin checks the same order
and alignment.

Each cube is carried by the arm on its side of the table; the row is in reach of both.
"""

from __future__ import annotations

from aem_bench.registration import register_task

from ._blocks import CubeRowEnv

CUBE_HALF = 0.025  # m, 5 cm cubes


@register_task("AEM/BlocksRankingRGB-v0", max_episode_steps=600, arms=2,
               skills=("pick", "place", "sort"))
class BlocksRankingRGBEnv(CubeRowEnv):
    """Line up red, green, blue cubes from left to right."""

    CUBES = (("red_cube", CUBE_HALF, (0.85, 0.1, 0.1)),
             ("green_cube", CUBE_HALF, (0.1, 0.7, 0.15)),
             ("blue_cube", CUBE_HALF, (0.1, 0.25, 0.9)))
