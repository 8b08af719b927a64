"""The starting train.py of the fixed-time task: a small GPT trained for TIME_BUDGET seconds, then saved.

Edit anything in this file. The fixed side is design.script.harness (constants, training batches,
save_model) and the evaluator, which this script never reaches: it rebuilds GPT(**config) from this file
and the saved weights and measures validation bits per byte itself. The summary printed at the end is
information only. Keep the training under `if __name__ == "__main__":` (the evaluator imports this file).
"""

import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from design.script.harness import (
    DEVICE,
    MAX_SEQ_LEN,
    SEED,
    TIME_BUDGET,
    VOCAB_SIZE,
    peak_memory_mb,
    save_model,
    token_bytes,
    train_batches,
)

# ---------------------------------------------------------------------------
# Hyper-parameters (edit these directly)
# ---------------------------------------------------------------------------

DEPTH = 2  # transformer blocks
WIDTH = 64  # model dimension
HEAD_DIM = 16  # per attention head: WIDTH // HEAD_DIM heads
MLP_RATIO = 4  # MLP hidden = MLP_RATIO * WIDTH
BATCH_SIZE = 8  # sequences per step
TRAIN_SEQ_LEN = 128  # training context (the model is built for MAX_SEQ_LEN)
LR = 3e-4  # peak learning rate (AdamW)
WEIGHT_DECAY = 0.0
ADAM_BETA1 = 0.9
ADAM_BETA2 = 0.95
WARMUP_STEPS = 10
WARMDOWN_RATIO = 0.0  # last fraction of the time budget, lr decays linearly to FINAL_LR_FRAC * LR
FINAL_LR_FRAC = 0.0
GRAD_CLIP = 1.0
INIT_STD = 0.02
LOG_EVERY = 25

# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head):
        super().__init__()
        self.n_head = n_head
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=False)
        self.proj = nn.Linear(n_embd, n_embd, bias=False)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, n_embd, hidden):
        super().__init__()
        self.fc = nn.Linear(n_embd, hidden, bias=False)
        self.proj = nn.Linear(hidden, n_embd, bias=False)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, n_embd, n_head, mlp_hidden):
        super().__init__()
        self.norm1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head)
        self.norm2 = nn.LayerNorm(n_embd)
        self.mlp = MLP(n_embd, mlp_hidden)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class GPT(nn.Module):
    def __init__(self, vocab_size, seq_len, n_layer, n_embd, n_head, mlp_hidden):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(seq_len, n_embd)
        self.blocks = nn.ModuleList(Block(n_embd, n_head, mlp_hidden) for _ in range(n_layer))
        self.norm_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)

    def forward(self, idx):
        pos = torch.arange(idx.size(1), device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.norm_f(x))


def init_weights(module):
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)


def get_lr_multiplier(progress, step):
    """lr / LR at `progress` (training seconds / TIME_BUDGET) and optimizer step `step`."""
    if step < WARMUP_STEPS:
        return (step + 1) / WARMUP_STEPS
    if WARMDOWN_RATIO <= 0 or progress < 1.0 - WARMDOWN_RATIO:
        return 1.0
    cooldown = (1.0 - progress) / WARMDOWN_RATIO
    return cooldown + (1 - cooldown) * FINAL_LR_FRAC


# ---------------------------------------------------------------------------
# Training: TIME_BUDGET seconds, counting the steps after the 10th (start-up and warm-up are free)
# ---------------------------------------------------------------------------

if __name__ == "__main__":
    t_start = time.time()
    torch.manual_seed(SEED)
    config = dict(vocab_size=VOCAB_SIZE, seq_len=MAX_SEQ_LEN, n_layer=DEPTH, n_embd=WIDTH, n_head=WIDTH // HEAD_DIM,
                  mlp_hidden=MLP_RATIO * WIDTH)
    model = GPT(**config).to(DEVICE)
    model.apply(init_weights)
    num_params = sum(p.numel() for p in model.parameters())
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    others = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": matrices, "weight_decay": WEIGHT_DECAY},
                                   {"params": others, "weight_decay": 0.0}], lr=LR, betas=(ADAM_BETA1, ADAM_BETA2))
    autocast = torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=DEVICE == "cuda")
    batches = train_batches(BATCH_SIZE, min(TRAIN_SEQ_LEN, MAX_SEQ_LEN))
    table = token_bytes().to(DEVICE)
    print(f"params: {num_params:,}  config: {config}  time budget: {TIME_BUDGET:.0f}s", flush=True)

    step, total_training_time, smooth_nats, smooth_bytes = 0, 0.0, 0.0, 0.0
    while True:
        t0 = time.time()
        x, y = next(batches)
        progress = min(total_training_time / TIME_BUDGET, 1.0)
        lrm = get_lr_multiplier(progress, step)
        for group in optimizer.param_groups:
            group["lr"] = LR * lrm
        with autocast:
            logits = model(x)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if GRAD_CLIP > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        loss_f = loss.item()
        if not math.isfinite(loss_f) or loss_f > 100:
            print("FAIL")
            raise SystemExit(1)
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        dt = time.time() - t0
        if step > 10:
            total_training_time += dt
        smooth_nats = 0.9 * smooth_nats + 0.1 * loss_f
        smooth_bytes = 0.9 * smooth_bytes + 0.1 * table[y].float().mean().item()
        step += 1
        if step % LOG_EVERY == 0:
            print(f"step {step:05d} | loss {smooth_nats / (1 - 0.9 ** step):.4f} | lrm {lrm:.2f} | dt {dt * 1000:.0f}ms"
                  f" | remaining {max(0.0, TIME_BUDGET - total_training_time):.0f}s", flush=True)
        if step > 10 and total_training_time >= TIME_BUDGET:
            break

    save_model(model, config)
    print("---")
    print(f"train_bpb:        {smooth_nats / (math.log(2) * smooth_bytes):.6f}")
    print(f"training_seconds: {total_training_time:.1f}")
    print(f"total_seconds:    {time.time() - t_start:.1f}")
    print(f"peak_vram_mb:     {peak_memory_mb():.1f}")
    print(f"num_steps:        {step}")
    print(f"num_params_M:     {num_params / 1e6:.2f}")
    print(f"depth:            {DEPTH}")
