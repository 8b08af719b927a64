"""The six MAD synthetic tasks (Poli et al. 2024, arXiv 2403.17844) as seeded, in-process generators.

Each task is a config dataclass (its defaults are the paper's baseline setting, from the configs/tasks
files of the public MAD code, github athms/mad-lab) and a function that writes one example with a numpy
Generator. `generate(name, cfg, n, seed, train)` stacks n examples into int64 tensors (inputs, targets)
of shape (n, seq_len): targets[t] is what the model must output at position t, IGNORE (-100) where
nothing is scored.

Conventions shared with MAD:
  - Token ids: keys, values, noise and special tokens come from disjoint ranges of the task's own
    vocabulary (not the byte vocabulary of the text proxy); special tokens take the top ids.
  - Fuzzy recall trains (train=True) on keys of 1..k_motif_size tokens and is scored (train=False) on
    keys of exactly k_motif_size tokens, as in MAD.
  - Multi-query recall (MAD's default): every value whose key was seen earlier in the sequence is
    scored, plus the final probe.

Where this differs from the MAD code (on purpose):
  - The recall tasks train on the scored positions only by default. MAD trains them as language models
    on every next token (its `is_training`); set lm_loss=True (the "paper" preset does) for that. On a
    2-layer attention model (d_model 64, seq_len 32, lr 3e-3) scored-only training reached 98% recall
    accuracy in 750 steps; next-token training was still at 33% after 1,500 (docs/mad.md).
  - Every task's inputs are exactly seq_len tokens (MAD's in-context recall gives seq_len - 1). A recall
    window that would be one token too long starts mid-pair: its first token is the value of a pair
    whose key fell outside the window, and that key counts as unseen.
  - Compression does not score the trailing compression token (constant, so free accuracy in MAD).
  - Padding (fuzzy recall) is never a training target.
  - Selective copying draws its blank positions from the seeded generator (MAD's code uses numpy's
    global state there, so its data are not reproducible by seed); their distribution is MAD's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
import torch

from aira.errors import UserError

IGNORE = -100  # target of a position that is not scored (torch's cross-entropy ignore_index)

_KEY, _VALUE, _OTHER = 0, 1, 2  # token roles in a recall stream


class MADError(UserError):
    """An invalid MAD task or suite setting. The message names the field and what to change."""


# ---------------------------------------------------------------------------------------------- configs


@dataclass
class RecallConfig:
    """In-context recall. Paper baseline: vocab 16, seq_len 128, multi-query, 12,800 training examples."""

    vocab_size: int = 16
    seq_len: int = 128
    multi_query: bool = True
    noise_vocab_size: int = 0
    frac_noise: float = 0.0  # probability that a key-value slot holds two noise tokens instead
    lm_loss: bool = False  # train on every next token (MAD's protocol) instead of the scored values only

    def problems(self) -> list[str]:
        out = _positive(self, "vocab_size", "seq_len")
        if out:
            return out
        special = 0 if self.multi_query else 1  # single-query adds a copy-prefix token before the probe
        n_keys, n_values = _split(self.vocab_size - special - self.noise_vocab_size)
        if n_keys < 1 or n_values < 1:
            out.append(f"vocab_size: {self.vocab_size} leaves no room for keys and values after "
                       f"{self.noise_vocab_size} noise and {special} special tokens; raise it")
        out += _noise_problems(self)
        if self.seq_len < 3 + special:
            out.append(f"seq_len: must be at least {3 + special} (one pair and the probe), "
                       f"got {self.seq_len}")
        return out


@dataclass
class NoisyRecallConfig(RecallConfig):
    """Noisy in-context recall. Paper baseline: vocab 32 of which 16 noise tokens, 20% noise, seq_len 128."""

    vocab_size: int = 32
    noise_vocab_size: int = 16
    frac_noise: float = 0.2


@dataclass
class FuzzyRecallConfig:
    """Fuzzy in-context recall: keys and values of 1..k_motif_size / 1..v_motif_size tokens.

    Paper baseline: vocab 16, seq_len 128, k_motif_size 3, v_motif_size 3, multi-query.
    """

    vocab_size: int = 16
    seq_len: int = 128
    k_motif_size: int = 3
    v_motif_size: int = 3
    multi_query: bool = True
    noise_vocab_size: int = 0
    frac_noise: float = 0.0
    lm_loss: bool = False  # train on every next token (MAD's protocol) instead of the scored values only

    def problems(self) -> list[str]:
        out = _positive(self, "vocab_size", "seq_len", "k_motif_size", "v_motif_size")
        if out:
            return out
        special = 1 if self.multi_query else 2  # pad (+ copy prefix)
        n_keys, n_values = _split(self.vocab_size - special - self.noise_vocab_size)
        if n_keys < self.k_motif_size or n_values < self.v_motif_size:
            out.append(f"vocab_size: {self.vocab_size} gives {n_keys} key and {n_values} value tokens, "
                       f"fewer than k_motif_size={self.k_motif_size} / v_motif_size={self.v_motif_size} "
                       "(tokens within a key or value are distinct); "
                       "raise vocab_size or lower the motif sizes")
        out += _noise_problems(self)
        need = 2 * (self.k_motif_size + self.v_motif_size) + special - 1
        if self.seq_len < need:
            out.append(f"seq_len: must be at least {need} to hold one key-value pair and the probe, "
                       f"got {self.seq_len}")
        return out


@dataclass
class SelectiveCopyConfig:
    """Selective copying. Paper baseline: vocab 16, seq_len 256, 16 tokens to copy."""

    vocab_size: int = 16
    seq_len: int = 256
    num_tokens_to_copy: int = 16

    def problems(self) -> list[str]:
        out = _positive(self, "vocab_size", "seq_len", "num_tokens_to_copy")
        if out:
            return out
        if self.vocab_size < 3:
            out.append(f"vocab_size: needs at least 3 (data, blank, copy tokens), got {self.vocab_size}")
        if self.seq_len <= 2 * self.num_tokens_to_copy + 1:  # MAD asserts at least one blank
            need = 2 * self.num_tokens_to_copy + 2
            out.append(f"seq_len: must be at least 2 * num_tokens_to_copy + 2 = {need} (room for one blank), "
                       f"got {self.seq_len}")
        return out


@dataclass
class CompressionConfig:
    """Compression: squeeze seq_len - 1 random tokens into one vector.

    Paper baseline: vocab 16, seq_len 32.
    """

    vocab_size: int = 16
    seq_len: int = 32

    def problems(self) -> list[str]:
        out = _positive(self, "vocab_size", "seq_len")
        if not out and self.vocab_size < 2:
            out.append(f"vocab_size: needs at least 2 (data and compression tokens), got {self.vocab_size}")
        if not out and self.seq_len < 2:
            out.append(f"seq_len: needs at least 2, got {self.seq_len}")
        return out


@dataclass
class MemorizationConfig:
    """Memorization of a fixed key -> value map. Paper baseline: vocab 256, seq_len 32, 256 training examples.

    The map depends on vocab_size and kv_seed only, never on the data seed: train, val and test (and
    every run) share it, so it can only be answered from the weights.
    """

    vocab_size: int = 256
    seq_len: int = 32
    kv_seed: int = 12345  # MAD's default seed

    def problems(self) -> list[str]:
        out = _positive(self, "vocab_size", "seq_len")
        if not out and self.vocab_size < 3:
            out.append(f"vocab_size: needs at least 3 (a key, a value, the insert token), "
                       f"got {self.vocab_size}")
        if not out and self.seq_len % 2:
            out.append(f"seq_len: must be even (key, insert-token pairs), got {self.seq_len}")
        return out


def _positive(cfg: object, *names: str) -> list[str]:
    out = []
    for name in names:
        v = getattr(cfg, name)
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            out.append(f"{name}: must be a positive integer, got {v!r}")
    return out


def _noise_problems(cfg: RecallConfig | FuzzyRecallConfig) -> list[str]:
    out = []
    if not isinstance(cfg.noise_vocab_size, int) or cfg.noise_vocab_size < 0:
        out.append(f"noise_vocab_size: must be an integer >= 0, got {cfg.noise_vocab_size!r}")
    if not 0 <= cfg.frac_noise < 1:
        out.append(f"frac_noise: must be in [0, 1), got {cfg.frac_noise}")
    elif cfg.frac_noise > 0 and cfg.noise_vocab_size == 0:
        out.append("frac_noise > 0 needs noise tokens: set noise_vocab_size > 0")
    return out


def _split(n: int) -> tuple[int, int]:
    """Keys take the lower half of the n ordinary tokens, values the upper half (as in MAD)."""
    return n // 2, n - n // 2


# ---------------------------------------------------------------------------------------------- tasks


def in_context_recall(cfg: RecallConfig, rng: np.random.Generator, train: bool
                      ) -> tuple[list[int], list[int]]:
    """Key-value pairs with a per-sequence random map; recall a value when its key comes back.

    Layout (multi-query): k v k v ... k v; single-query adds a copy-prefix token before the final pair.
    With frac_noise > 0 a slot holds two noise tokens instead of a pair (noisy recall).
    """
    special = 0 if cfg.multi_query else 1
    n_ordinary = cfg.vocab_size - special - cfg.noise_vocab_size
    n_keys, _ = _split(n_ordinary)
    body_len = cfg.seq_len + 1 - (2 + special)  # the stream is seq_len + 1 tokens; inputs drop the last
    n_slots = -(-body_len // 2)
    kv: dict[int, int] = {}
    body: list[int] = []
    roles: list[int] = []
    for slot in range(n_slots):
        # The last slot is always a pair, so the window holds at least one key for the probe.
        if slot < n_slots - 1 and cfg.frac_noise > 0 and rng.random() < cfg.frac_noise:
            body += rng.integers(n_ordinary, n_ordinary + cfg.noise_vocab_size, size=2).tolist()
            roles += [_OTHER, _OTHER]
        else:
            k = int(rng.integers(n_keys))
            if k not in kv:
                kv[k] = int(rng.integers(n_keys, n_ordinary))
            body += [k, kv[k]]
            roles += [_KEY, _VALUE]
    cut = len(body) - body_len  # 0 or 1: start mid-pair so that the inputs are exactly seq_len long
    body, roles = body[cut:], roles[cut:]
    if roles[0] == _VALUE:
        roles[0] = _OTHER
    scored = [False] * len(body)
    seen: list[int] = []
    for i, role in enumerate(roles):
        if role == _KEY:
            scored[i + 1] = cfg.multi_query and body[i] in seen
            if body[i] not in seen:
                seen.append(body[i])
    probe = seen[int(rng.integers(len(seen)))]
    tail = ([cfg.vocab_size - 1] if special else []) + [probe, kv[probe]]
    stream = body + tail
    scored += [False] * (len(tail) - 1) + [True]
    return _shift(stream, scored, train and cfg.lm_loss, pad=None)


def fuzzy_in_context_recall(cfg: FuzzyRecallConfig, rng: np.random.Generator, train: bool
                            ) -> tuple[list[int], list[int]]:
    """Recall with keys and values that are runs of several tokens; the sequence is left-padded."""
    special = 1 if cfg.multi_query else 2
    # MAD's ids: the copy prefix is the top id, the padding the one below it (the top one when there is no prefix).
    copy_prefix, pad = cfg.vocab_size - 1, cfg.vocab_size - (1 if cfg.multi_query else 2)
    n_ordinary = cfg.vocab_size - special - cfg.noise_vocab_size
    n_keys, _ = _split(n_ordinary)
    # Room for the pairs: the stream is seq_len + 1 tokens, less the copy prefix and the longest probe.
    budget = cfg.seq_len + 1 - (special - 1) - (cfg.k_motif_size + cfg.v_motif_size)
    kv: dict[tuple[int, ...], tuple[int, ...]] = {}
    body: list[int] = []
    roles: list[int] = []
    while True:
        # Training mixes key lengths; scoring always uses the longest keys (MAD's protocol).
        k_size = int(rng.integers(1, cfg.k_motif_size + 1)) if train else cfg.k_motif_size
        v_size = int(rng.integers(1, cfg.v_motif_size + 1))
        if body and cfg.frac_noise > 0 and rng.random() < cfg.frac_noise:
            if len(body) + k_size + v_size > budget:
                break
            body += rng.integers(n_ordinary, n_ordinary + cfg.noise_vocab_size, size=k_size + v_size).tolist()
            roles += [_OTHER] * (k_size + v_size)
            continue
        k = tuple(rng.choice(n_keys, size=k_size, replace=False).tolist())
        # A key seen before keeps its value (and that value's length).
        v = kv.get(k) or tuple(rng.choice(np.arange(n_keys, n_ordinary), size=v_size, replace=False).tolist())
        if len(body) + len(k) + len(v) > budget:
            break
        kv[k] = v
        body += [*k, *v]
        roles += [_KEY] * len(k) + [_VALUE] * len(v)
    scored = [False] * len(body)
    seen: list[tuple[int, ...]] = []
    i = 0
    while i < len(body):  # walk the pairs: a key is a maximal run of key tokens, its value the run after it
        if roles[i] != _KEY:
            i += 1
            continue
        j = i
        while roles[j] == _KEY:
            j += 1
        k = tuple(body[i:j])
        if cfg.multi_query and k in seen:
            for t in range(j, j + len(kv[k])):
                scored[t] = True
        if k not in seen:
            seen.append(k)
        i = j + len(kv[k])
    probe = seen[int(rng.integers(len(seen)))]
    tail = ([] if cfg.multi_query else [copy_prefix]) + [*probe, *kv[probe]]
    n_pad = cfg.seq_len + 1 - len(body) - len(tail)
    stream = [pad] * n_pad + body + tail
    scored = [False] * n_pad + scored + [False] * (len(tail) - len(kv[probe])) + [True] * len(kv[probe])
    return _shift(stream, scored, train and cfg.lm_loss, pad=pad)


def selective_copying(cfg: SelectiveCopyConfig, rng: np.random.Generator, train: bool
                      ) -> tuple[list[int], list[int]]:
    """Data tokens scattered among blanks; after the copy token, output them in order, one per blank.

    As in MAD, each blank goes before one of the data tokens, chosen uniformly and independently, so the
    last data token always sits right before the copy token and the blank runs are multinomial.
    """
    m, L = cfg.num_tokens_to_copy, cfg.seq_len
    blank, copy = cfg.vocab_size - 2, cfg.vocab_size - 1
    data = rng.integers(0, cfg.vocab_size - 2, size=m).tolist()
    blanks_before = rng.multinomial(L - 2 * m - 1, [1 / m] * m).tolist()
    inputs: list[int] = []
    for n_blank, tok in zip(blanks_before, data):
        inputs += [blank] * n_blank + [tok]
    inputs += [copy] + [blank] * m
    targets = [IGNORE] * (L - m) + data
    return inputs, targets


def compression(cfg: CompressionConfig, rng: np.random.Generator, train: bool) -> tuple[list[int], list[int]]:
    """Random tokens then a compression token; a decoder rebuilds every token from that one position."""
    data = rng.integers(0, cfg.vocab_size - 1, size=cfg.seq_len - 1).tolist()
    return data + [cfg.vocab_size - 1], data + [IGNORE]


@functools.lru_cache(maxsize=16)
def memorization_map(vocab_size: int, kv_seed: int = 12345) -> tuple[int, ...]:
    """value_of[key] for keys 0..n_keys-1: a fixed random injection of keys into the value tokens.

    The same map as MAD's for the same seed (its generate_kv_map): the key list, then the value list,
    each shuffled as a list of 1-tuples by one Generator, paired in order.
    """
    n_keys, _ = _split(vocab_size - 1)
    rng = np.random.default_rng(kv_seed)
    keys = [(k,) for k in range(n_keys)]
    values = [(v,) for v in range(n_keys, vocab_size - 1)]
    rng.shuffle(keys)
    rng.shuffle(values)
    value_of = {k[0]: v[0] for k, v in zip(keys, values)}
    return tuple(value_of[k] for k in range(n_keys))


def memorization(cfg: MemorizationConfig, rng: np.random.Generator, train: bool
                 ) -> tuple[list[int], list[int]]:
    """Pairs (key, insert token); at the insert token output the key's value from the fixed map."""
    value_of = memorization_map(cfg.vocab_size, cfg.kv_seed)
    keys = rng.integers(0, len(value_of), size=cfg.seq_len // 2).tolist()
    insert = cfg.vocab_size - 1
    inputs = [t for k in keys for t in (k, insert)]
    targets = [t for k in keys for t in (IGNORE, value_of[k])]
    return inputs, targets


def _shift(stream: list[int], scored: list[bool], every_token: bool, pad: int | None
           ) -> tuple[list[int], list[int]]:
    """A stream of seq_len + 1 tokens -> (inputs, targets): position t predicts stream[t + 1]."""
    nxt = stream[1:]
    if every_token:
        return stream[:-1], [IGNORE if tok == pad else tok for tok in nxt]
    return stream[:-1], [tok if s else IGNORE for tok, s in zip(nxt, scored[1:])]


# ---------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class MADTask:
    name: str
    config: type
    example: Callable[..., tuple[list[int], list[int]]]
    readout: str = "lm"  # "lm": LM head at every position; "compress": decode every token from the last one


TASKS: dict[str, MADTask] = {t.name: t for t in (
    MADTask("in_context_recall", RecallConfig, in_context_recall),
    MADTask("fuzzy_in_context_recall", FuzzyRecallConfig, fuzzy_in_context_recall),
    MADTask("noisy_in_context_recall", NoisyRecallConfig, in_context_recall),
    MADTask("selective_copying", SelectiveCopyConfig, selective_copying),
    MADTask("compression", CompressionConfig, compression, readout="compress"),
    MADTask("memorization", MemorizationConfig, memorization),
)}


def get_task(name: str) -> MADTask:
    if name not in TASKS:
        raise MADError(f"unknown MAD task {name!r}; tasks: {', '.join(TASKS)}")
    return TASKS[name]


def make_task_config(name: str, **settings: object) -> object:
    """The task's config with `settings` applied; raises MADError naming any unknown or invalid field."""
    task = get_task(name)
    allowed = [f.name for f in fields(task.config)]
    unknown = [k for k in settings if k not in allowed]
    if unknown:
        raise MADError(f"{name}: unknown setting(s) {', '.join(map(repr, unknown))}; "
                       f"allowed: {', '.join(allowed)}")
    cfg = task.config(**settings)
    problems = cfg.problems()
    if problems:
        raise MADError(f"invalid {name} settings:\n  - " + "\n  - ".join(problems))
    return cfg


def generate(name: str, cfg: object, n: int, seed: int | list[int], train: bool = False
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """n examples of task `name` as int64 (inputs, targets), each (n, seq_len); same seed, same data.

    train=True gives training examples (fuzzy recall: mixed key lengths; recall with lm_loss: every next
    token is a target), train=False the scored ones.
    """
    task = get_task(name)
    if not isinstance(cfg, task.config):
        raise MADError(f"{name} takes a {task.config.__name__}, got {type(cfg).__name__}")
    problems = cfg.problems()
    if problems:
        raise MADError(f"invalid {name} settings:\n  - " + "\n  - ".join(problems))
    rng = np.random.default_rng(seed)
    pairs = [task.example(cfg, rng, train) for _ in range(n)]
    inputs = torch.tensor([p[0] for p in pairs], dtype=torch.int64).reshape(n, cfg.seq_len)
    targets = torch.tensor([p[1] for p in pairs], dtype=torch.int64).reshape(n, cfg.seq_len)
    return inputs, targets
