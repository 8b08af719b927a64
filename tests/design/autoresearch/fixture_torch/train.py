"""
The autoresearch fixture's train.py in torch: a small GPT trained at import (as autoresearch's is) for
TIME_BUDGET seconds, bf16 autocast on a GPU, the summary printed as autoresearch prints it, and the
model saved with torch.save for aira's trusted evaluation.
Usage: python train.py
"""

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from prepare import DEVICE, MAX_SEQ_LEN, TIME_BUDGET, Tokenizer, evaluate_bpb, make_dataloader
from torch import nn


@dataclass
class GPTConfig:
    vocab_size: int = 256
    n_layer: int = 2
    n_embd: int = 128
    n_head: int = 4


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.n_head = c.n_head
        self.ln1, self.ln2 = nn.LayerNorm(c.n_embd), nn.LayerNorm(c.n_embd)
        self.qkv = nn.Linear(c.n_embd, 3 * c.n_embd, bias=False)
        self.proj = nn.Linear(c.n_embd, c.n_embd, bias=False)
        self.fc = nn.Linear(c.n_embd, 4 * c.n_embd, bias=False)
        self.out = nn.Linear(4 * c.n_embd, c.n_embd, bias=False)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.n_head, d // self.n_head).transpose(1, 3).unbind(2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(y)
        return x + self.out(F.relu(self.fc(self.ln2(x))).square())


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(MAX_SEQ_LEN, config.n_embd)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)

    def forward(self, idx, targets=None, reduction="mean"):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x)).float()
        if targets is None:
            return logits
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), reduction=reduction)


# Hyperparameters (edit these directly)
ASPECT_RATIO = 64       # n_embd = DEPTH * ASPECT_RATIO
HEAD_DIM = 32           # n_head = n_embd // HEAD_DIM
TOTAL_BATCH_SIZE = 2**13  # tokens per optimizer step
MATRIX_LR = 0.001       # AdamW learning rate
WEIGHT_DECAY = 0.0      # AdamW weight decay
ADAM_BETAS = (0.9, 0.95)  # Adam beta1, beta2
WARMDOWN_RATIO = 0.3    # fraction of time budget for LR warmdown
DEPTH = 2               # transformer layers
DEVICE_BATCH_SIZE = 32  # rows per forward

t_start = time.time()
torch.manual_seed(42)
tokenizer = Tokenizer.from_directory()
n_embd = DEPTH * ASPECT_RATIO
config = GPTConfig(vocab_size=tokenizer.get_vocab_size(), n_layer=DEPTH, n_embd=n_embd, n_head=n_embd // HEAD_DIM)
model = GPT(config).to(DEVICE)
num_params = sum(p.numel() for p in model.parameters())
optimizer = torch.optim.AdamW(model.parameters(), lr=MATRIX_LR, betas=ADAM_BETAS, weight_decay=WEIGHT_DECAY)
autocast = torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=DEVICE == "cuda")
grad_accum_steps = TOTAL_BATCH_SIZE // (DEVICE_BATCH_SIZE * MAX_SEQ_LEN)
train_loader = make_dataloader(tokenizer, DEVICE_BATCH_SIZE, MAX_SEQ_LEN, "train")
print(f"Time budget: {TIME_BUDGET}s on {DEVICE}")

step, total_training_time = 0, 0.0
while True:
    if DEVICE == "cuda":
        torch.cuda.synchronize()
    t0 = time.time()
    for _ in range(grad_accum_steps):
        x, y, epoch = next(train_loader)
        with autocast:
            loss = model(x, y)
        (loss / grad_accum_steps).backward()
    progress = min(total_training_time / TIME_BUDGET, 1.0)
    lrm = 1.0 if progress < 1.0 - WARMDOWN_RATIO else (1.0 - progress) / WARMDOWN_RATIO
    for group in optimizer.param_groups:
        group["lr"] = MATRIX_LR * lrm
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if DEVICE == "cuda":
        torch.cuda.synchronize()
    if step > 5:
        total_training_time += time.time() - t0
    step += 1
    if step > 5 and total_training_time >= TIME_BUDGET:
        break

model.eval()
with autocast:
    val_bpb = evaluate_bpb(model, tokenizer, DEVICE_BATCH_SIZE)
torch.save(model, "model.pt")  # the convention aira's trusted_eval reads

t_end = time.time()
peak_vram_mb = torch.cuda.max_memory_allocated() / 1024 / 1024 if DEVICE == "cuda" else 0.0
print("---")
print(f"val_bpb:          {val_bpb:.6f}")
print(f"training_seconds: {total_training_time:.1f}")
print(f"total_seconds:    {t_end - t_start:.1f}")
print(f"peak_vram_mb:     {peak_vram_mb:.1f}")
print(f"mfu_percent:      {0.0:.2f}")
print(f"total_tokens_M:   {step * TOTAL_BATCH_SIZE / 1e6:.1f}")
print(f"num_steps:        {step}")
print(f"num_params_M:     {num_params / 1e6:.1f}")
print(f"depth:            {DEPTH}")
