"""README.md of an export: what the model is, what it was trained on and how, and how to load and score it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from models.lm import CausalLM

LM_EVAL_TASKS = "hellaswag,arc_easy,arc_challenge,piqa,sciq,winogrande"  # eval.lm.tasks' default suite


def _last(path: Path, kind: str) -> dict[str, Any]:
    """The last record of `kind` ("train" / "val") in a run's metrics.jsonl, or {}."""
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return next((r for r in reversed(rows) if r.get("kind") == kind), {})


def _pattern(pattern: list[str]) -> str:
    """'[attn, mlp] x 4' for a repeated block, else the list."""
    for n in range(1, len(pattern) // 2 + 1):
        if len(pattern) % n == 0 and pattern[:n] * (len(pattern) // n) == pattern:
            return f"[{', '.join(pattern[:n])}] x {len(pattern) // n}"
    return f"[{', '.join(pattern)}]"


def model_card(run_dir: Path, model: CausalLM, meta: dict[str, Any], tok_name: str, eos: str, seq_len: int,
               out: Path, hf_class: str | None) -> str:
    """Markdown model card; `eos` describes the end-of-text token; `hf_class` is out/hf's transformers class or None."""
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").is_file() else {}
    data, optim, train = cfg.get("data") or {}, cfg.get("optim") or {}, cfg.get("train") or {}
    run = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    spec = model.spec
    name = spec.name or cfg.get("name") or run_dir.name
    last_train, last_val = _last(run_dir / "metrics.jsonl", "train"), _last(run_dir / "metrics.jsonl", "val")
    loss = f"train {last_train['loss']:.4f} nats/token at step {last_train['step']}" if last_train else "not logged"
    if last_val:
        loss += (f"; validation {last_val['val_loss']:.4f} nats/token, {last_val['val_bpb']:.4f} bits per byte "
                 f"at step {last_val['step']}")
    hf = out / "hf"
    card = f"""# {name}

A base language model (trained on raw documents; no instruction tuning, no chat template), pretrained with aira
(`aira pretrain run`) and exported from checkpoint step {meta.get("step")} by `aira pretrain export`.

## Model

| | |
| --- | --- |
| layers | `{_pattern(list(spec.pattern))}` ({len(spec.pattern)} pre-norm residual layers, {spec.norm}) |
| d_model / vocab | {spec.d_model} / {spec.vocab_size} |
| parameters | {model.num_params():,} (tied embeddings: {str(spec.tie_embeddings).lower()}) |
| max_seq_len | {spec.max_seq_len} (trained on sequences of {seq_len} tokens) |
| spec | `spec.yaml` beside the weights, hash {spec.hash()} |
| transformers | {f"`{hf_class}` in `hf/`, same logits as aira's model" if hf_class else
                   "no equivalent class (docs/pretrain.md, Export): load it with aira"} |

## Training

- data: `{data.get("source", "?")}`, tokenizer `{tok_name}`, documents joined by the end-of-text token
- tokens: {meta.get("tokens") or "?"} ({meta.get("step")} steps x {train.get("batch_size", "?")} sequences x {seq_len} tokens)
- loss: {loss}
- optimizer: AdamW, peak lr {optim.get("lr", "?")}, {optim.get("schedule", "cosine")} schedule, weight decay \
{optim.get("weight_decay", "?")}, grad clip {optim.get("grad_clip", "?")}; DeepSpeed ZeRO stage {train.get("zero_stage", "?")}, \
{run.get("dtype", train.get("dtype", "?"))} on {run.get("accelerator", "?")}, seed {train.get("seed", "?")}

## Special tokens

End of text: {eos}.
It ends every training document, so it is BOS, EOS and PAD at once: the tokenizer prepends it to every text (as a
Llama tokenizer prepends BOS), `generate()` stops on it, and special-token text inside a document is encoded as
text, as in training.

## Use
"""
    if hf_class:
        card = "---\nlibrary_name: transformers\ntags: [aira, base-model]\n---\n\n" + card + f"""
```python
from transformers import AutoModelForCausalLM, AutoTokenizer
tok = AutoTokenizer.from_pretrained("{hf}")
model = AutoModelForCausalLM.from_pretrained("{hf}")
out = model.generate(**tok("The", return_tensors="pt"), max_new_tokens=50)
print(tok.decode(out[0], skip_special_tokens=True))
```

Scored by lm-eval's own `hf` model, with the settings that reproduce `aira eval lm` (docs/eval.md):

```bash
# multiple choice, loglikelihood and generation tasks: the tokenizer puts the start token first, as in training
lm_eval --model hf --model_args pretrained={hf},max_length={seq_len} --tasks {LM_EVAL_TASKS}
# rolling perplexity (wikitext, ...): add_bos_token=False, so the start token is context and is not scored
lm_eval --model hf --model_args pretrained={hf},max_length={seq_len},add_bos_token=False --tasks wikitext
# vLLM (untested here: no GPU)
vllm serve {hf}
```
"""
    same = ", the numbers of the first lm_eval command" if hf_class else ""
    return card + f"""
With aira:

```bash
aira eval lm {out}    # the default suite{same}
```

`from pretrain.export import load_export; model = load_export("{out}")` gives the aira model.
"""
