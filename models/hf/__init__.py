"""Hugging Face transformers interop: weights in and out of Llama, Mamba and Mamba2 models.

The converters load on first use (PEP 562 module __getattr__), and they import transformers only
inside the functions that need it: `import models`, `import models.hf` and `aira models list` never
pay for transformers (several seconds and ~1 GB of imports).
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "from_hf_llama": "models.hf.llama",
    "to_hf_llama": "models.hf.llama",
    "from_hf_mamba": "models.hf.mamba",
    "from_hf_mamba2": "models.hf.mamba",
    "to_hf_mamba": "models.hf.mamba",
    "to_hf_mamba2": "models.hf.mamba",
}

__all__ = ["from_hf_llama", "from_hf_mamba", "from_hf_mamba2", "to_hf_llama", "to_hf_mamba", "to_hf_mamba2"]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'models.hf' has no attribute {name!r}; it has {', '.join(__all__)}")
    return getattr(importlib.import_module(_HOME[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
