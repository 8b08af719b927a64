"""Anything we can score -> (CausalLM, the tokenizer it was trained with, how its contexts start).

Sources, tried in this order (the first whose files are there wins):
    export   a `aira pretrain export` folder: model.safetensors + spec.yaml (+ export.json, tokenizer files)
    run      a pretrain RUN_DIR: config.yaml + spec.yaml + checkpoints/ (newest checkpoint, or `tag`)
    hf       a transformers folder (config.json) of a Llama, Mamba or Mamba2 model
    spec     a models preset name or a spec .yaml/.json, randomly initialised (smoke tests, baselines at chance)

Tokenization follows pretrain/data.py: documents are encoded without special tokens and joined by the
tokenizer's end-of-text id, so during training every document starts right after an EOS. Each scored
context therefore starts with that EOS (`prefix_id`), as BOS would for a Llama; a model from another
project's HF folder keeps its own BOS.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from eval.lm.errors import LMEvalError
from models.errors import SpecError
from models.lm import CausalLM, build_lm
from models.spec import ArchSpec
from pretrain.errors import PretrainError
from pretrain.export import load_export, run_settings, saved_tokenizer, state_dict_from_checkpoint
from pretrain.tokenizer import ByteTokenizer, Tokenizer, load_tokenizer


@dataclass
class Loaded:
    """A model ready to score, with its tokenizer and where it came from (saved with the results)."""

    model: CausalLM
    tokenizer: Tokenizer
    prefix_id: int  # first token of every context: the document separator the model saw in training
    max_length: int  # tokens of context the model is scored with (the training sequence length if known)
    source: dict[str, Any] = field(default_factory=dict)


def decode(tok: Tokenizer, ids: list[int]) -> str:
    """Token ids -> text (pretrain's tokenizers encode only; generation needs the way back)."""
    if isinstance(tok, ByteTokenizer):
        return bytes(ids).decode("utf-8", errors="replace")
    inner = getattr(tok, "tok", None)  # BPETokenizer / HFAutoTokenizer keep the library tokenizer here
    if inner is None:
        raise LMEvalError(f"tokenizer {tok.name} cannot decode ids, so generation tasks cannot be scored")
    return inner.decode(ids)


# ---------------------------------------------------------------------------------------------- sources


def _load_export(path: Path, tag: str | None) -> tuple[CausalLM, Tokenizer, int | None, dict]:
    info = _export_info(path)
    source = {"kind": "export", "path": str(path), "step": info.get("step"), "tokens": info.get("tokens")}
    return load_export(path), saved_tokenizer(path, info["tokenizer"]), info["seq_len"], source


def _export_info(path: Path) -> dict[str, Any]:
    """An export's export.json with its tokenizer setting and seq_len (older exports: from the run's config)."""
    info = json.loads((path / "export.json").read_text()) if (path / "export.json").is_file() else {}
    if "seq_len" not in info:
        setting, seq_len = run_settings(Path(info["run_dir"])) if info.get("run_dir") else (None, None)
        info.update(tokenizer=setting, seq_len=seq_len)
    return info


def _load_run(path: Path, tag: str | None) -> tuple[CausalLM, Tokenizer, int | None, dict]:
    from pretrain import checkpoint

    spec = ArchSpec.load(path / "spec.yaml")
    tag, meta = checkpoint.check(path / "checkpoints", {"spec_hash": spec.hash()}, tag)
    model = build_lm(spec)
    model.load_state_dict(state_dict_from_checkpoint(path / "checkpoints", tag), strict=True)
    setting, seq_len = run_settings(path)
    source = {"kind": "run", "path": str(path), "tag": tag, "step": meta.get("step"), "tokens": meta.get("tokens")}
    return model.eval(), saved_tokenizer(path, setting), seq_len, source


_HF_CONVERTERS = {"llama": "from_hf_llama", "mamba": "from_hf_mamba", "mamba2": "from_hf_mamba2"}


def _load_hf(path: Path, tag: str | None) -> tuple[CausalLM, Tokenizer | None, int | None, dict]:
    from transformers import AutoModelForCausalLM

    import models.hf

    model_type = json.loads((path / "config.json").read_text()).get("model_type")
    if model_type not in _HF_CONVERTERS:
        raise LMEvalError(f"{path}: transformers model_type {model_type!r} cannot be converted; "
                          f"supported: {', '.join(_HF_CONVERTERS)}")
    hf_model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    model = getattr(models.hf, _HF_CONVERTERS[model_type])(hf_model).eval()
    source = {"kind": "hf", "path": str(path), "model_type": model_type}
    tok = load_tokenizer(f"hf:{path}") if (path / "tokenizer_config.json").is_file() else None
    export_dir = path.parent
    if (export_dir / "export.json").is_file():  # the hf/ folder of an aira export: training seq_len and step
        info = _export_info(export_dir)
        source.update(step=info.get("step"), aira_export=str(export_dir))
        # Exports before issue 19 wrote no tokenizer into hf/: the run's is one folder up.
        return model, tok or saved_tokenizer(export_dir, info["tokenizer"]), info["seq_len"], source
    return model, tok, None, source


def _load_spec(name: str, seed: int) -> tuple[CausalLM, Tokenizer, int | None, dict]:
    from models.presets import load_spec

    spec = load_spec(name)
    torch.manual_seed(seed)
    return build_lm(spec).eval(), ByteTokenizer(), None, {"kind": "random-init", "spec": name, "seed": seed}


SOURCES: dict[str, tuple[Callable[[Path], bool], Callable[..., tuple]]] = {
    # An export's hf/ holds model.safetensors + spec.yaml too, but its weights carry transformers' names.
    "export": (lambda p: (p / "model.safetensors").is_file() and (p / "spec.yaml").is_file()
               and not (p / "config.json").is_file(), _load_export),
    "run": (lambda p: (p / "spec.yaml").is_file() and (p / "checkpoints").is_dir(), _load_run),
    "hf": (lambda p: (p / "config.json").is_file(), _load_hf),
}


def load(source: str | Path, tokenizer: str | None = None, tag: str | None = None,
         max_length: int | None = None, seed: int = 0) -> Loaded:
    """Load an export, a run (newest checkpoint or `tag`), an HF folder, or a preset/spec at random init.

    `tokenizer` replaces the one found with the model (bytes, a tokenizer.json, hf:NAME); `max_length`
    (tokens) replaces the training sequence length (else the spec's max_seq_len).
    """
    path = Path(source).expanduser()
    kind = next((k for k, (match, _) in SOURCES.items() if path.is_dir() and match(path)), None)
    try:
        if kind is None:
            if path.is_dir():
                raise LMEvalError(f"{path} is neither an export (model.safetensors + spec.yaml), a pretrain run "
                                  "(spec.yaml + checkpoints/), nor a transformers folder (config.json)")
            model, tok, seq_len, info = _load_spec(str(source), seed)
        else:
            model, tok, seq_len, info = SOURCES[kind][1](path, tag)
        if tokenizer is not None:
            tok = load_tokenizer(tokenizer)
        if tok is None:
            raise LMEvalError(f"{path} has no tokenizer files; pass --tokenizer (bytes, a tokenizer.json, hf:NAME)")
    except (SpecError, PretrainError) as e:
        raise LMEvalError(str(e)) from None
    if tok.vocab_size > model.spec.vocab_size:
        raise LMEvalError(f"tokenizer {tok.name} has {tok.vocab_size} ids but the model's vocab_size is "
                          f"{model.spec.vocab_size}; pass the tokenizer it was trained with (--tokenizer)")
    prefix = tok.eos_id
    if info.get("kind") == "hf" and "aira_export" not in info:  # someone else's model: keep its own BOS convention
        bos = getattr(getattr(tok, "tok", None), "bos_token_id", None)
        prefix = tok.eos_id if bos is None else int(bos)
    info.update(tokenizer=tok.name, spec_hash=model.spec.hash(), params=model.num_params())
    return Loaded(model, tok, prefix, int(max_length or seq_len or model.spec.max_seq_len), info)
