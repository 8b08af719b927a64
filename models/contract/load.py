"""Loading the primitives one Python file defines, for checking: `with primitives_in(path) as classes: ...`.

The file is imported as a fresh module under a unique name (importlib.util.spec_from_file_location),
so two files, or two versions of one, never share a namespace. Whatever the import registered is
unregistered, and the module dropped, when the block ends: a checking process can load many files
one after another. The file's code runs in this process; see models.contract for where that is fine.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from models.errors import PrimitiveFileError
from models.registry import Primitive, get_primitive, primitive_names, unregister


def _module_name(path: Path) -> str:
    digest = hashlib.sha256(str(path.resolve()).encode() + path.read_bytes()).hexdigest()[:12]
    stem = "".join(c if c.isalnum() else "_" for c in path.stem)
    return f"aira_checked_{stem}_{digest}"


def _import(path: Path, name: str) -> object:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PrimitiveFileError(f"{path} cannot be imported as a Python module (expected a .py file)")
    module = importlib.util.module_from_spec(spec)
    # In sys.modules while checked: dataclasses and typing.get_type_hints look the module up by name.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise PrimitiveFileError(f"{path}:{e.lineno}: SyntaxError: {e.msg}") from None
    except Exception as e:  # noqa: BLE001  (whatever the file raises is the reason it cannot be checked)
        text = str(e).strip().splitlines()
        raise PrimitiveFileError(f"{path} failed to import: {type(e).__name__}"
                                 + (f": {text[0]}" if text else "")) from None
    return module


@contextmanager
def primitives_in(path: str | Path) -> Iterator[list[type[Primitive]]]:
    """The Primitive subclasses the file at `path` registers or defines, in the order found.

    PrimitiveFileError (one line) when the file is missing, does not import (the reason, with the line
    of a syntax error), or holds no primitive.
    """
    path = Path(path)
    if not path.is_file():
        raise PrimitiveFileError(f"{path} does not exist" if not path.exists() else f"{path} is not a file")
    name = _module_name(path)
    before = set(primitive_names())
    try:
        module = _import(path, name)
        added = [get_primitive(n) for n in primitive_names() if n not in before]
        # A class without a `name` is a base for others, not a primitive (Primitive only annotates it).
        defined = [obj for obj in vars(module).values()
                   if isinstance(obj, type) and issubclass(obj, Primitive) and obj.__module__ == name
                   and hasattr(obj, "name")]
        found = list(dict.fromkeys(added + defined))
        if not found:
            raise PrimitiveFileError(f"{path} defines no primitive (a subclass of models.registry.Primitive "
                                     "with a `name` and a `Config` dataclass)")
        yield found
    finally:
        for n in set(primitive_names()) - before:
            unregister(n)
        sys.modules.pop(name, None)
