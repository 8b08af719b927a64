"""Hugging Face transformers interop: weights in and out of Llama, Mamba and Mamba2 models."""

from models.hf.llama import from_hf_llama, to_hf_llama
from models.hf.mamba import from_hf_mamba, from_hf_mamba2

__all__ = ["from_hf_llama", "from_hf_mamba", "from_hf_mamba2", "to_hf_llama"]
