"""models/: primitives, specs and model assembly. Depends on torch only (fast kernels optional)."""

from models.errors import SpecError
from models.lm import CausalLM, SequenceClassifier, bits_per_byte, build_classifier, build_lm
from models.registry import Primitive, get_primitive, primitive_names, register
from models.spec import ArchSpec

__all__ = [
    "ArchSpec", "CausalLM", "Primitive", "SequenceClassifier", "SpecError", "bits_per_byte",
    "build_classifier", "build_lm", "get_primitive", "primitive_names", "register",
]
