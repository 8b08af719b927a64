"""A run's tokenizer as transformers tokenizer files (tokenizer.json + tokenizer_config.json) for an export.

The model learnt one convention (pretrain/data.py): documents are encoded without special tokens and joined
by the end-of-text id, so every document it saw starts right after that id. The exported tokenizer states
exactly that: the end-of-text token is BOS, EOS and PAD at once; encoding with special tokens (transformers'
default) prepends it, as a Llama tokenizer prepends its BOS; special-token text inside a document stays text
(`split_special_tokens`), as in training. No chat template: these are base models trained on raw documents.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pretrain.errors import PretrainError
from pretrain.tokenizer import BPETokenizer, ByteTokenizer, HFAutoTokenizer, Tokenizer


def byte_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map, the alphabet of `tokenizers`' ByteLevel pre-tokenizer."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def byte_backend() -> Any:
    """A `tokenizers` Tokenizer whose ids are the UTF-8 bytes (ByteTokenizer's), built without training.

    A BPE with the 256 byte-level symbols as its vocabulary and no merges: ByteLevel maps each byte to its
    symbol (no regex split, no prefix space), so id = byte value, and the ByteLevel decoder maps back.
    """
    from tokenizers import Tokenizer as Backend
    from tokenizers import decoders, models, pre_tokenizers

    vocab = {char: b for b, char in byte_to_unicode().items()}
    backend = Backend(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    return backend


def _backend(tok: Tokenizer) -> Any:
    """A private copy of the `tokenizers` Tokenizer behind tok (its BOS rule is rewritten below)."""
    from tokenizers import Tokenizer as Backend

    if isinstance(tok, ByteTokenizer):
        return byte_backend()
    if isinstance(tok, BPETokenizer):
        return Backend.from_str(tok.tok.to_str())
    inner = getattr(tok, "tok", None)
    if isinstance(tok, HFAutoTokenizer) and hasattr(inner, "backend_tokenizer"):
        return Backend.from_str(inner.backend_tokenizer.to_str())
    raise PretrainError(f"tokenizer {tok.name} has no `tokenizers` form (a slow transformers tokenizer?), so its "
                        "start-of-document rule cannot be written into tokenizer.json; export with --hf no or "
                        "train with a fast tokenizer")


def describe_eos(tok: Tokenizer) -> str:
    """The end-of-text token for people: its text and id (the byte tokenizer's is the newline byte)."""
    if isinstance(tok, ByteTokenizer):
        return f"the newline byte (id {tok.eos_id}; `Ċ`, GPT-2's symbol for it, in tokenizer.json)"
    inner = tok.tok  # a transformers tokenizer (hf:NAME) or a `tokenizers` one (BPE)
    text = inner.eos_token if hasattr(inner, "eos_token") else inner.id_to_token(tok.eos_id)
    return f"`{text}` (id {tok.eos_id})"


def to_hf_tokenizer(tok: Tokenizer, max_length: int) -> Any:
    """transformers PreTrainedTokenizerFast for tok: the end-of-text token is BOS = EOS = PAD and starts each text."""
    from tokenizers import AddedToken, processors
    from transformers import PreTrainedTokenizerFast

    backend = _backend(tok)
    eos = backend.id_to_token(tok.eos_id)
    backend.add_special_tokens([AddedToken(eos, special=True, normalized=False)])  # already there except bytes
    if backend.token_to_id(eos) != tok.eos_id:
        raise PretrainError(f"tokenizer {tok.name}: end-of-text {eos!r} does not map back to id {tok.eos_id}")
    backend.post_processor = processors.TemplateProcessing(
        single=f"{eos} $A", pair=f"{eos} $A {eos} $B", special_tokens=[(eos, tok.eos_id)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=eos, eos_token=eos, pad_token=eos,
                                   model_max_length=max_length, split_special_tokens=True,
                                   clean_up_tokenization_spaces=False)


def save_hf_tokenizer(tok: Tokenizer, directory: Path, max_length: int) -> None:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json for tok into directory."""
    to_hf_tokenizer(tok, max_length).save_pretrained(str(directory))
    path = Path(directory) / "tokenizer_config.json"
    cfg = json.loads(path.read_text())
    # transformers 5 writes its own class name, which transformers 4 (still pinned by some serving and
    # evaluation setups) cannot resolve; PreTrainedTokenizerFast means the same in both.
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
