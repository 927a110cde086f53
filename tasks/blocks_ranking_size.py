"""BlocksRankingSize: line up three cubes of one colour from the largest to the smallest.

After RoboTwin 2.0's ``blocks_ranking_size``. Cubes of 5, 4 and 3 cm edge, all the same colour,
start at shuffled random places off a line across the middle of the table (x = 0). Success: the
cubes stand on that line (every centre within 5 cm of x = 0 and within 2 cm of each other in x),
large to small from left to right as the head camera sees them (decreasing y), neighbours less
than 3 cm apart, all resting on the table, both grippers open and no cube held.

Each cube is carried by the arm on its side of the table; the row is in reach of both.
"""

from __future__ import annotations

from aem_bench.registration import register_task

from ._blocks import CubeRowEnv

COLOUR = (0.9, 0.55, 0.1)  # one colour for all: only size tells the cubes apart


@register_task("AEM/BlocksRankingSize-v0", max_episode_steps=600, arms=2,
               skills=("pick", "place", "sort"))
class BlocksRankingSizeEnv(CubeRowEnv):
    """Line up three same-coloured cubes from largest to smallest, left to right."""

    CUBES = (("large_cube", 0.025, COLOUR),  # half sizes in m: 5, 4 and 3 cm cubes
             ("medium_cube", 0.02, COLOUR),
             ("small_cube", 0.015, COLOUR))
