"""Autoregressive generation with per-layer caches (KV for attention, recurrent state for SSMs)."""

from __future__ import annotations

import torch

from models.lm import CausalLM


def new_states(lm: CausalLM) -> list[dict]:
    """Empty per-layer generation state for one batch of sequences starting now."""
    return [{} for _ in lm.layers]


@torch.no_grad()
def generate(lm: CausalLM, prompt: torch.Tensor, max_new_tokens: int, temperature: float = 0.0,
             top_k: int | None = None, generator: torch.Generator | None = None,
             stop_token: int | None = None) -> torch.Tensor:
    """Continue `prompt` (batch, seq) by up to max_new_tokens; greedy when temperature == 0.

    The prompt is run once (prefill), then one token per step reusing each layer's state.
    Returns (batch, seq + generated).
    """
    states = new_states(lm)
    logits = lm(prompt, states=states).logits[:, -1]
    out = [prompt]
    done = torch.zeros(prompt.shape[0], dtype=torch.bool, device=prompt.device)
    for _ in range(max_new_tokens):
        nxt = _pick(logits.float(), temperature, top_k, generator)
        if stop_token is not None:
            nxt = torch.where(done, torch.full_like(nxt, stop_token), nxt)
            done |= nxt == stop_token
        out.append(nxt[:, None])
        if stop_token is not None and bool(done.all()):
            break
        logits = lm(nxt[:, None], states=states).logits[:, -1]
    return torch.cat(out, dim=1)


def _pick(logits: torch.Tensor, temperature: float, top_k: int | None,
          generator: torch.Generator | None) -> torch.Tensor:
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k is not None:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)
