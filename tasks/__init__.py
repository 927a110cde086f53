"""Task environments; importing this package registers them under ``AEM/``.

Every module in this folder is imported, so a new task is one new file with a
``@register_task`` class (see ``handover_block.py``).
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
