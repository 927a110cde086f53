"""``python -m aem_bench.cli`` (as ``torchrun ... -m aem_bench.cli train`` runs it)."""

import sys

from aem_bench.cli import main

sys.exit(main())
