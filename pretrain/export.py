"""Export a run's checkpoint as plain weights: model.safetensors + spec.yaml (loadable with models/ alone),
and the transformers Llama format when the spec is Llama-shaped.

Weights are the fp32 master copy gathered from the ZeRO shards (DeepSpeed's zero_to_fp32), so a
ZeRO-3 or bf16 run exports the same numbers the optimizer holds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from models.errors import SpecError
from models.lm import CausalLM, build_lm
from models.spec import ArchSpec
from pretrain import checkpoint
from pretrain.errors import PretrainError


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


def export_run(run_dir: str | Path, out: str | Path | None = None, tag: str | None = None,
               hf: str = "auto") -> dict[str, Path]:
    """Write RUN_DIR's checkpoint (newest, or `tag`) to `out` (default RUN_DIR/export); {kind: path}."""
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    spec_path = run_dir / "spec.yaml"
    if not spec_path.is_file():
        raise PretrainError(f"{run_dir} is not a pretrain run directory (no spec.yaml)")
    spec = ArchSpec.load(spec_path)
    root = run_dir / "checkpoints"
    tag, meta = checkpoint.check(root, {"spec_hash": spec.hash()}, tag)
    model = build_lm(spec)
    model.load_state_dict(state_dict_from_checkpoint(root, tag), strict=True)
    out = Path(out) if out else run_dir / "export"
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    save_file(model.state_dict(), str(out / "model.safetensors"),
              metadata={"spec_hash": spec.hash(), "step": str(meta["step"])})
    spec.save(out / "spec.yaml")
    written["safetensors"] = out / "model.safetensors"
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (run_dir / f).is_file():
            shutil.copy(run_dir / f, out / f)
    (out / "export.json").write_text(json.dumps({"run_dir": str(run_dir), "tag": tag, "step": meta["step"],
                                                 "tokens": meta.get("tokens"), "spec_hash": spec.hash()}, indent=1))
    if hf != "no":
        from models.hf import to_hf_llama

        try:
            hf_model = to_hf_llama(model)
        except SpecError as e:
            if hf == "yes":
                raise PretrainError(f"--hf yes: {e}") from None
        else:
            hf_model.save_pretrained(str(out / "hf"))
            written["hf_llama"] = out / "hf"
    return written


def load_export(directory: str | Path) -> CausalLM:
    """A CausalLM from an export directory (model.safetensors + spec.yaml), in eval mode."""
    from safetensors.torch import load_file

    directory = Path(directory)
    model = build_lm(ArchSpec.load(directory / "spec.yaml"))
    model.load_state_dict(load_file(str(directory / "model.safetensors")), strict=True)
    return model.eval()
