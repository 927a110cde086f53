"""Where the protocol's seeds start.

Demonstrations and training draw their seeds from 0 up; evaluation starts far above, so no
evaluation layout is ever one a policy was trained on, and two policies evaluated from the same
start face the same initial states.
"""

EVAL_SEED_START = 100_000
