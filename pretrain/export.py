"""Export a run's checkpoint: model.safetensors + spec.yaml (loadable with models/ alone), a model card, and
an `hf/` folder that transformers, lm-eval's `hf` model and vLLM load with no other files, for every spec
that has a transformers class (Llama shape; pure Mamba; pure Mamba2).

Weights are the fp32 master copy gathered from the ZeRO shards (DeepSpeed's zero_to_fp32), so a
ZeRO-3 or bf16 run exports the same numbers the optimizer holds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
import yaml

from models.errors import SpecError
from models.lm import CausalLM, build_lm
from models.spec import ArchSpec
from pretrain import checkpoint
from pretrain.errors import PretrainError
from pretrain.tokenizer import Tokenizer, load_tokenizer

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def state_dict_from_checkpoint(ckpt_dir: Path, tag: str) -> dict[str, torch.Tensor]:
    """Full fp32 state dict of a DeepSpeed checkpoint (any ZeRO stage), on CPU, without a process group."""
    from pretrain.distributed import select_accelerator

    select_accelerator()  # before deepspeed is imported
    meta = json.loads((ckpt_dir / tag / "meta.json").read_text())
    if meta.get("zero_stage", 0) == 0:
        states = torch.load(ckpt_dir / tag / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=False)
        return {k: v.float() for k, v in states["module"].items()}
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    sd = get_fp32_state_dict_from_zero_checkpoint(str(ckpt_dir), tag=tag)
    return {k: v.float().contiguous() for k, v in sd.items()}


def run_settings(run_dir: Path) -> tuple[str | None, int | None]:
    """(data.tokenizer, data.seq_len) of a run's config.yaml, or Nones when it is not there."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return None, None
    data = (yaml.safe_load(path.read_text()) or {}).get("data") or {}
    return data.get("tokenizer", "bytes"), data.get("seq_len")


def saved_tokenizer(directory: Path, setting: str | None) -> Tokenizer:
    """The tokenizer a run trained with (`setting` = its data.tokenizer), preferring the copy in `directory`."""
    if setting is None:  # no config to ask: go by the files present
        if (directory / "tokenizer_config.json").is_file():
            setting = f"hf:{directory}"
        elif (directory / "tokenizer.json").is_file():
            setting = str(directory / "tokenizer.json")
        else:
            setting = "bytes"
    elif setting.startswith("hf:") and (directory / "tokenizer_config.json").is_file():
        setting = f"hf:{directory}"  # the run saved it: no hub access needed
    elif setting != "bytes" and not setting.startswith("hf:") and (directory / "tokenizer.json").is_file():
        setting = str(directory / "tokenizer.json")  # the config's path may be relative to another cwd
    return load_tokenizer(setting)


def to_hf(model: CausalLM) -> Any:
    """The transformers model with model's weights: Mamba / Mamba2 for pure SSM specs, else Llama (SpecError
    saying what differs from a Llama when the spec is neither; hybrids have no transformers class)."""
    import models.hf

    kinds = {pcls.name for _, pcls, _ in model.spec.layers()}
    if kinds in ({"mamba"}, {"mamba2"}):
        return getattr(models.hf, f"to_hf_{kinds.pop()}")(model)
    return models.hf.to_hf_llama(model)


def write_hf(hf_model: Any, tok: Tokenizer, spec: ArchSpec, seq_len: int, directory: Path) -> None:
    """save_pretrained with our special-token ids, the tokenizer files, and the spec beside the weights."""
    from transformers import GenerationConfig

    from pretrain.hf_tokenizer import save_hf_tokenizer

    # transformers' class defaults (Llama: bos 1, eos 2) are ordinary tokens in our vocabularies.
    ids = {"bos_token_id": tok.eos_id, "eos_token_id": tok.eos_id, "pad_token_id": tok.eos_id}
    for key, value in ids.items():
        setattr(hf_model.config, key, value)
    hf_model.generation_config = GenerationConfig(**ids)
    hf_model.save_pretrained(str(directory))
    _add_legacy_rope(directory / "config.json")
    save_hf_tokenizer(tok, directory, seq_len)
    spec.save(directory / "spec.yaml")


def _add_legacy_rope(path: Path) -> None:
    """Also write RoPE as rope_theta + rope_scaling: transformers 4 (which vLLM and other tools may still run)
    ignores transformers 5's rope_parameters and would silently use theta 10000 without scaling."""
    cfg = json.loads(path.read_text())
    rope = dict(cfg.get("rope_parameters") or {})
    if not rope or "rope_theta" in cfg:
        return
    cfg["rope_theta"] = rope.pop("rope_theta")
    cfg["rope_scaling"] = None if rope.get("rope_type", "default") == "default" else rope
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def export_run(run_dir: str | Path, out: str | Path | None = None, tag: str | None = None,
               hf: str = "auto") -> dict[str, Path]:
    """Write RUN_DIR's checkpoint (newest, or `tag`) to `out` (default RUN_DIR/export); {kind: path}."""
    from safetensors.torch import save_file

    from pretrain.hf_tokenizer import describe_eos
    from pretrain.model_card import model_card

    run_dir = Path(run_dir)
    spec_path = run_dir / "spec.yaml"
    if not spec_path.is_file():
        raise PretrainError(f"{run_dir} is not a pretrain run directory (no spec.yaml)")
    spec = ArchSpec.load(spec_path)
    root = run_dir / "checkpoints"
    tag, meta = checkpoint.check(root, {"spec_hash": spec.hash()}, tag)
    model = build_lm(spec)
    model.load_state_dict(state_dict_from_checkpoint(root, tag), strict=True)
    setting, seq_len = run_settings(run_dir)
    tok = saved_tokenizer(run_dir, setting)
    seq_len = int(seq_len or spec.max_seq_len)
    out = Path(out) if out else run_dir / "export"
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    save_file(model.state_dict(), str(out / "model.safetensors"),
              metadata={"spec_hash": spec.hash(), "step": str(meta["step"])})
    spec.save(out / "spec.yaml")
    written["safetensors"] = out / "model.safetensors"
    for f in TOKENIZER_FILES:
        if (run_dir / f).is_file():
            shutil.copy(run_dir / f, out / f)
    (out / "export.json").write_text(json.dumps({
        "run_dir": str(run_dir), "tag": tag, "step": meta["step"], "tokens": meta.get("tokens"),
        "spec_hash": spec.hash(), "tokenizer": setting, "seq_len": seq_len}, indent=1))
    hf_class = None
    if hf != "no":
        try:
            hf_model = to_hf(model)
        except SpecError as e:
            if hf == "yes":
                raise PretrainError(f"--hf yes: no transformers class fits this spec (Llama shape, pure mamba or "
                                    f"pure mamba2); it is exported as model.safetensors + spec.yaml only.\n{e}") from None
        else:
            write_hf(hf_model, tok, spec, seq_len, out / "hf")
            hf_class = type(hf_model).__name__
            written[f"hf_{hf_model.config.model_type}"] = out / "hf"
    card = model_card(run_dir, model, meta, tok.name, describe_eos(tok), seq_len, out, hf_class)
    for folder in (out, out / "hf") if hf_class else (out,):
        (folder / "README.md").write_text(card)
    written["model_card"] = out / "README.md"
    return written


def load_export(directory: str | Path) -> CausalLM:
    """A CausalLM from an export directory (model.safetensors + spec.yaml), in eval mode."""
    from safetensors.torch import load_file

    directory = Path(directory)
    model = build_lm(ArchSpec.load(directory / "spec.yaml"))
    model.load_state_dict(load_file(str(directory / "model.safetensors")), strict=True)
    return model.eval()
