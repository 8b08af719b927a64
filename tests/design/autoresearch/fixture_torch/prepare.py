"""
The autoresearch fixture in torch (GPU when there is one): the same synthetic corpus, byte tokenizer and
contract as ../fixture/prepare.py, with autoresearch's torch signatures (tensors on the device,
`evaluate_bpb(model, tokenizer, batch_size)` calling `model(x, y, reduction='none')`).

Usage:
    python prepare.py       # writes the corpus to $AUTORESEARCH_CACHE_DIR (default: ./.cache)
"""

import json
import math
import os
import random

import torch

MAX_SEQ_LEN = 128
TIME_BUDGET = float(os.environ.get("AUTORESEARCH_TIME_BUDGET", "5"))
EVAL_TOKENS = 16 * MAX_SEQ_LEN * 8
CACHE_DIR = os.environ.get("AUTORESEARCH_CACHE_DIR",
                           os.path.join(os.path.dirname(os.path.abspath(__file__)), ".cache"))
DATA_DIR = os.path.join(CACHE_DIR, "data")
TOKENIZER_DIR = os.path.join(CACHE_DIR, "tokenizer")
VOCAB_SIZE = 256
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

NOUNS = ["cat", "dog", "bird", "fish", "horse", "mouse", "owl", "fox", "bear", "wolf"]
VERBS = ["sees", "chases", "finds", "likes", "follows", "hears", "meets"]
ADJS = ["small", "big", "red", "quick", "lazy", "old", "young"]


def _sentence(rng):
    def phrase():
        return " ".join(["the"] + ([rng.choice(ADJS)] if rng.random() < 0.5 else []) + [rng.choice(NOUNS)])
    return f"{phrase()} {rng.choice(VERBS)} {phrase()}.".capitalize()


def write_data():
    os.makedirs(DATA_DIR, exist_ok=True)
    os.makedirs(TOKENIZER_DIR, exist_ok=True)
    for split, n, seed in (("train", 6000, 1), ("val", 2000, 2)):
        rng = random.Random(seed)
        with open(os.path.join(DATA_DIR, f"{split}.txt"), "w") as f:
            f.write(" ".join(_sentence(rng) for _ in range(n)) + "\n")
    with open(os.path.join(TOKENIZER_DIR, "tokenizer.json"), "w") as f:
        json.dump({"kind": "bytes", "vocab_size": VOCAB_SIZE}, f)


class Tokenizer:
    def __init__(self, vocab_size):
        self.vocab_size = vocab_size

    @classmethod
    def from_directory(cls, tokenizer_dir=TOKENIZER_DIR):
        with open(os.path.join(tokenizer_dir, "tokenizer.json")) as f:
            return cls(json.load(f)["vocab_size"])

    def get_vocab_size(self):
        return self.vocab_size

    def encode(self, text):
        return list(text.encode("utf-8"))


def _tokens(tokenizer, split):
    with open(os.path.join(DATA_DIR, f"{split}.txt")) as f:
        return torch.tensor(tokenizer.encode(f.read()), dtype=torch.long)


def make_dataloader(tokenizer, B, T, split):
    data = _tokens(tokenizer, split)
    g = torch.Generator().manual_seed(0)
    while True:
        starts = torch.randint(0, len(data) - T - 1, (B,), generator=g)
        rows = torch.stack([data[s:s + T + 1] for s in starts.tolist()]).to(DEVICE)
        yield rows[:, :-1], rows[:, 1:], 1


@torch.no_grad()
def evaluate_bpb(model, tokenizer, batch_size):
    """Bits per byte of the validation split's first EVAL_TOKENS targets (DO NOT CHANGE: the metric)."""
    data = _tokens(tokenizer, "val")
    steps = EVAL_TOKENS // (batch_size * MAX_SEQ_LEN)
    total_nats, total_bytes, pos = 0.0, 0, 0
    for _ in range(steps):
        rows = torch.stack([data[pos + i * MAX_SEQ_LEN: pos + (i + 1) * MAX_SEQ_LEN + 1]
                            for i in range(batch_size)]).to(DEVICE)
        pos += batch_size * MAX_SEQ_LEN
        loss = model(rows[:, :-1], rows[:, 1:], reduction="none").float()
        total_nats += loss.sum().item()
        total_bytes += loss.numel()  # one byte per token
    return total_nats / (math.log(2) * total_bytes)


if __name__ == "__main__":
    write_data()
    print(f"Done! Cache directory: {CACHE_DIR}")
