"""aem-bench: robot manipulation under partial observability.

Importing the package registers every task under the ``AEM/`` namespace in Gymnasium::

    import gymnasium as gym
    import aem_bench  # noqa: F401
    env = gym.make("AEM/HandoverBlock-v0")
"""

__version__ = "0.1.0"

from aem_bench import tasks as _tasks  # noqa: F401  (registers AEM/* environments)
