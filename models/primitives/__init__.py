"""Every module in this package defines and registers one primitive; importing the package loads all.

Adding a primitive = adding a file here (plus its test); no other file changes. Files elsewhere (e.g.
mechanisms adopted with `aira design register --out DIR`) load too when their folder is listed in the
environment variable AIRA_PRIMITIVES (folders separated by os.pathsep), in every process that imports
models, workers included.
"""

import importlib
import importlib.util
import os
import pkgutil
import sys
from pathlib import Path

PLUGINS_ENV = "AIRA_PRIMITIVES"

for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")


def _load_plugins() -> None:
    for folder in filter(None, os.environ.get(PLUGINS_ENV, "").split(os.pathsep)):
        for path in sorted(Path(folder).glob("*.py")):
            name = f"aira_primitives_{path.stem}"
            if name in sys.modules or path.stem.startswith("_"):
                continue
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)


_load_plugins()
