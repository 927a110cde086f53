"""The simulated table-top on SAPIEN 3 that every task builds on: the scene base ``TableTopEnv``
with ManiSkill3's hooks (``tabletop``), the Panda arms from ManiSkill3's assets (``panda``), the
IK and scripted motions of the experts (``motion``), poses (``poses``), clutter and randomized
scenes (``clutter``) and the staged dense reward (``reward``). The bottom layer, below
``aem_bench.tasks``: it imports SAPIEN, Gymnasium, NumPy and its own modules, and nothing else of
aem-bench, not even the tasks.
"""
