"""aem-bench: robot manipulation under partial observability.

Importing the package registers every task under the ``AEM/`` namespace in Gymnasium (from
``tasks/registry.json``: a task's module, and SAPIEN, load on its first ``gym.make``)::

    import gymnasium as gym
    import aem_bench  # noqa: F401
    env = gym.make("AEM/HandoverBlock-v0")

What lives here: the core modules, one idea each, and the packages ``sim``, ``evaluator``,
``tasks`` (``tasks/``), ``policies`` (``policies/``) and ``leaderboard`` (``leaderboard/``), in
layers whose imports only point down (``tests/test_layers.py`` checks them). At the bottom the
foundations, which import no other layer: ``errors``, ``seeds``, ``stats``, ``progress``,
``provenance``, ``media``, ``demos`` (the demonstration files) and ``registration`` (the task
table). Then ``sim`` and ``tasks``, and ``expert``, which runs the tasks' scripted experts, and
``gallery``, which renders the tasks' scenes. Then the policy zoo, which reads demonstrations and never imports the simulator, the tasks or anything
above it. Then evaluation: ``evaluator`` (which runs any policy and never imports the zoo),
``checkpoint_eval``, ``testing``, ``certify``, ``task_table`` (the tasks with their expert
rates and certificates), ``probe``, ``leaks``, ``recipe``, ``sweep``, ``submit``, ``aem_history``
and ``sb3``. At the top the ``leaderboard``, which reads results
files and task metadata only, and ``cli``, which may import every layer and nothing imports.
"""

__version__ = "0.1.0"

from aem_bench import tasks as _tasks  # noqa: F401  (registers AEM/* environments)
