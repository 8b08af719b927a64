"""Every module in this package defines and registers one primitive; importing the package loads all.

Adding a primitive = adding a file here (plus its test); no other file changes.
"""

import importlib
import pkgutil

for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")
