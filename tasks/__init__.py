"""Task environments; importing this package registers them under ``AEM/``."""

from aem_bench.tasks import handover_block  # noqa: F401
