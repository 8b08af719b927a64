"""The validation battery for a candidate token mixer, run before any training; library code.

`validate(pcls, cfg, spec)` runs the checks below in order, cheap to expensive, and stops at the first
failure; `validate_file(path, spec)` first reads the file ("syntax", "imports", "structure": design.code,
nothing run) and loads it ("load": models.contract.primitives_in), each a result of the same report.
The report's `message` goes verbatim to the debug operator: what failed, with the numbers measured,
and a hint what to change.

  declaration         models.contract.check_declaration, and role "sequence"
  build               builds at the task's width in the mode the task runs it (non-causal: natively, or as
                      two causal copies, models.lm.Bidirectional), and with causal=True (the contract
                      checks below build it so)
  params              parameters of one layer as the task builds it <= max_params
  shape_dtype         (batch, seq, d_model) in, same shape and dtype out, finite: fp32 at a short length and
                      at the task's length; under bf16 autocast shape kept and finite
  gradients           every parameter and the input get a finite, non-zero gradient (the module as the task
                      builds it; models.contract.check_gradients builds the causal one)
  batch_independence  perturbing one row of a batch moves no other row (training mode: BatchNorm mixes rows)
  causality           causal tasks: models.contract.check_causality, and outputs <= t have zero gradient
                      with respect to inputs > t
  padding             models.contract.check_padding and check_classifier_padding (LRA batches are padded)
  noncausal           non-causal tasks: models.contract.check_noncausal (the encoder runs and trains)
  determinism         models.contract.check_determinism
  speed               forward + backward at (seq_len, d_model) <= time_ratio_vs_attention x the built-in
                      attention's ("attn", same width, length and mode), measured in the same loop. At short
                      lengths on CPU attention costs ~1 ms and fixed costs dominate: at 64 tokens, d_model 32
                      a two-copy s4d or GLA takes 4-6x attention's time, the templates up to 5x; at 256
                      tokens 2-3x; at LRA lengths under 1x. So keep the ratio loose (>= 10) at short lengths
  overfit             a one-layer classifier [candidate, mlp] memorises 8 random sequences with random labels
                      within overfit_steps (attention, linear attention, s4d and the templates need 7-19 of
                      the default 100); every sequence starts with one shared token and the classifier pools
                      that first position, so only the mixer can tell the sequences apart
  growth              forward + backward time at L, 2L, 4L at a small width; the log-log slope is the
                      growth exponent, <= max_growth_exponent when set. Peak memory and its exponent are
                      reported on CUDA only: on CPU there is no allocator statistic to read (tracemalloc
                      does not see torch), so time is the measure there. Every time is the minimum over
                      repeats taken in rounds; on CPU it is the CPU time of one thread, which other processes
                      on a loaded machine do not inflate (wall time varied 2x between runs on a busy 2-core box).

Not required of a candidate, so not in the battery: cached generation, cache_bytes and flops_per_token
(LRA encoders never decode; a FLOP formula is optional: reported in `metrics` when implemented), the
closed-form param_count (the budget counts the module itself). `aira design register` runs the full
models.contract on a mechanism before it becomes a primitive.

The candidate's code runs in this process: callers run this inside the sandbox (agents.sandbox). The
per-check time budget interrupts Python code (SIGALRM, main thread only) but not a single long op;
the sandbox's wall-clock limit is the hard one. Failure classes: "syntax", "import" and
"validation:<check>" come from here; "timeout", "oom", "nan" and "crash" are the caller's to assign.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from aira.errors import UserError
from design.code import CandidateError, check_imports, check_structure, parse
from models.contract import (
    ATOL,
    SEQ,
    CheckSkipped,
    ContractError,
    check_causality,
    check_classifier_padding,
    check_declaration,
    check_determinism,
    check_noncausal,
    check_padding,
    primitives_in,
)
from models.contract.harness import inputs, spec_for
from models.contract.run import OverBudget, time_limit
from models.errors import PrimitiveFileError
from models.lm import Bidirectional, SequenceClassifier
from models.registry import Primitive, get_primitive, registered

# Hints appended to a failure's message, for the agent that has to fix the code.
HINTS = {
    "syntax": "fix the Python syntax at the line given",
    "imports": "a candidate may import only torch, math, numpy and models (plus dataclasses, typing, "
               "__future__); remove the import or implement what you needed with torch",
    "structure": "one file = one `class X(Primitive)` with `name`, a `Config` dataclass and "
                 "forward(x, state=None, mask=None); helpers are plain functions or nn.Modules",
    "load": "the module must import cleanly: fix the error raised at import time",
    "declaration": "set `name` (a unique string), `Config` (a dataclass whose defaults are valid at this "
                   "width) and role = \"sequence\"; `check(d_model, cfg)` must accept the config",
    "build": "__init__(d_model, cfg, causal=True) must build at the task's width: derive sizes from d_model "
             "and cfg (e.g. head_dim = d_model // n_heads) and accept causal=True and causal=False",
    "params": "shrink the layer: fewer or narrower projections, smaller state, lower expansion factors",
    "shape_dtype": "forward(x, state=None, mask=None) must return a finite tensor shaped like x (batch, seq, "
                   "d_model) in x's dtype, also under torch.autocast(bfloat16): run FFTs and exps in fp32 "
                   "with autocast disabled, then cast back",
    "gradients": "use every nn.Parameter in forward, without .detach(), .data or torch.no_grad(); keep "
                 "sqrt, log and divisions away from 0 (add an epsilon)",
    "batch_independence": "never reduce over dim 0 (the batch): no x.mean(0), no BatchNorm, no reshape that "
                          "merges the batch with another dimension",
    "causality": "with causal=True position t may read only positions <= t: mask scores with a lower-"
                 "triangular mask, use cumsum or left-padded convolutions, no whole-sequence statistics",
    "padding": "mask is bool (batch, seq), True at real tokens: zero padded positions before mixing "
               "(x * mask[..., None]), hide padded keys from softmax (masked_fill with -inf) and leave them "
               "out of sums, means and normalisers; use relative positions only (padding may be on the left)",
    "noncausal": "with causal=False the layer must read tokens on both sides and run inside "
                 "SequenceClassifier; set native_bidirectional = True only if causal=False works by itself",
    "determinism": "no randomness in forward except dropout, no state kept on self between calls (counters, "
                   "caches), initialise only from torch's seeded RNG",
    "speed": "avoid Python loops over positions; use a parallel form (masked matmuls, cumsum, chunked "
             "products, FFT convolution)",
    "overfit": "training must be stable and the mixer must carry information between positions: keep "
               "output scales sane (normalise, project back to d_model) and nothing that overflows as "
               "weights change",
    "growth": "the cost must grow slower in L: avoid (L x L) score matrices; use a chunked, recurrent, "
              "kernel (linear attention), windowed or FFT form",
}


@dataclass
class ValidationSpec:
    """What a task asks of a candidate. Times in seconds; lengths in tokens."""

    d_model: int = 64                           # the task's width
    seq_len: int = 256                          # the task's sequence length
    causal_required: bool = False               # False: LRA encoders; True: language models (part 2)
    max_params: int | None = None               # parameters of one layer as the task builds it; None: no bound
    max_growth_exponent: float | None = None    # e.g. 1.5 when sub-quadratic is required; None: reported only
    time_ratio_vs_attention: float | None = 8.0  # fwd+bwd at (seq_len, d_model) / the built-in attention's
    speed_batch: int = 2
    speed_repeats: int = 5                      # the minimum over repeats is kept (robust on a loaded box)
    growth_d_model: int = 16                    # small width for the growth measurement (else the task's)
    growth_seq_len: int | None = None           # base L of L, 2L, 4L; None: seq_len (on CPU ~256: a quadratic
                                                # candidate at 4 x an LRA length needs GBs)
    growth_batch: int = 2
    growth_repeats: int = 5
    overfit_sequences: int = 8
    overfit_seq_len: int = 32
    overfit_vocab: int = 16
    overfit_classes: int = 4
    overfit_steps: int = 100                    # most steps allowed to memorise (mechanisms here need 7-19)
    overfit_lr: float = 3e-3
    overfit_loss: float = 0.1                   # memorised: every label right and mean loss below this (nats)
    budget_s: float = 60.0                      # per check
    device: str = "cpu"                         # where speed and overfit run; contract checks use CPU
    # Where growth is timed: the CPU by default, also on a GPU machine, where at these small sizes kernel
    # launches dominate the time and would hide a quadratic term (on cuda, memory growth is read too).
    growth_device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("d_model", "seq_len", "speed_batch", "speed_repeats", "growth_d_model", "growth_batch",
                     "growth_repeats", "overfit_sequences", "overfit_seq_len", "overfit_vocab", "overfit_steps"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise UserError(f"validation spec: {name} must be a positive integer, got {v!r}")
        if self.overfit_classes < 2:
            raise UserError(f"validation spec: overfit_classes must be >= 2, got {self.overfit_classes!r}")
        if self.growth_seq_len is not None and self.growth_seq_len < 1:
            raise UserError(f"validation spec: growth_seq_len must be positive or null, got {self.growth_seq_len}")
        for name in ("max_growth_exponent", "time_ratio_vs_attention"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise UserError(f"validation spec: {name} must be > 0 or null, got {v!r}")
        if self.budget_s <= 0:
            raise UserError(f"validation spec: budget_s must be > 0, got {self.budget_s}")


@dataclass(frozen=True)
class ValidationResult:
    """One check: passed (a skip counts as passed), wall seconds, and why (empty on a plain pass)."""

    check: str
    passed: bool
    seconds: float = 0.0
    message: str = ""
    skipped: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ValidationReport:
    """The checks run, in order (the battery stops at the first failure), and the numbers measured."""

    results: list[ValidationResult] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed_check(self) -> str | None:
        return next((r.check for r in self.results if not r.passed), None)

    @property
    def failure_class(self) -> str | None:
        """None when ok; "syntax", "import" (forbidden import, or the file fails to import) or "validation:<check>"."""
        check = self.failed_check
        if check is None:
            return None
        if check == "syntax":
            return "syntax"
        if check in ("imports", "load"):
            return "import"
        return f"validation:{check}"

    @property
    def message(self) -> str:
        """Empty when ok; else what failed with its numbers and a hint, for the debug operator."""
        r = next((r for r in self.results if not r.passed), None)
        if r is None:
            return ""
        return f"validation check '{r.check}' failed: {r.message}\nHint: {HINTS.get(r.check, '')}".rstrip()

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "failed_check": self.failed_check, "failure_class": self.failure_class,
                "message": self.message, "results": [r.to_dict() for r in self.results], "metrics": self.metrics}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ValidationReport:
        return cls([ValidationResult(**r) for r in d.get("results", [])], dict(d.get("metrics", {})))


# ---------------------------------------------------------------------------------------------- running


class _Fail(Exception):
    """A check's finding: the message gives the numbers."""


def _expect(ok: bool, message: str) -> None:
    if not ok:
        raise _Fail(message)


def _candidate_frame(e: BaseException, pcls: type) -> str:
    """' (at line N of the candidate: code)' for the innermost traceback frame in the candidate's file."""
    module = sys.modules.get(pcls.__module__)
    path = getattr(module, "__file__", None)
    if not path:
        return ""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == path]
    if not frames:
        return ""
    f = frames[-1]
    return f" (at line {f.lineno} of the candidate: {(f.line or '').strip()[:100]})"


def _run(name: str, fn: Callable[[], None], budget_s: float, pcls: type) -> ValidationResult:
    start = time.perf_counter()
    passed, skipped, message = True, False, ""
    try:
        with time_limit(budget_s):
            fn()
    except _Fail as e:
        passed, message = False, str(e)
    except ContractError as e:
        passed, message = False, e.detail
    except CheckSkipped as e:
        skipped, message = True, str(e)
    except OverBudget:
        passed, message = False, (f"stopped after {time.perf_counter() - start:.1f} s, over the {budget_s:g} s "
                                  "budget of one check")
    except Exception as e:  # noqa: BLE001  (the candidate's own code raised: a finding, not a crash of ours)
        text = str(e).strip().splitlines()
        passed = False
        message = f"the candidate raised {type(e).__name__}" + (f": {text[0][:300]}" if text else "")
        message += _candidate_frame(e, pcls)
    seconds = time.perf_counter() - start
    if passed and not skipped and seconds > budget_s:
        passed, message = False, f"took {seconds:.1f} s, over the {budget_s:g} s budget of one check"
    return ValidationResult(name, passed, round(seconds, 4), message, skipped)


# ---------------------------------------------------------------------------------------------- helpers


def build_mixer(pcls: type[Primitive], cfg: Any, d_model: int, causal: bool, seed: int = 0,
                std: float = 0.02) -> torch.nn.Module:
    """The module a layer runs, as models.lm.Layer builds it: the primitive itself, or for non-causal use
    of a causal-only primitive two causal copies (Bidirectional); seeded, init_weights(std), train mode."""
    torch.manual_seed(seed)
    m = pcls(d_model, cfg, causal=causal) if causal or pcls.native_bidirectional else Bidirectional(pcls, d_model, cfg)
    m.init_weights(std)
    return m


def _attention_cfg(d_model: int) -> Any:
    """Default attention config valid at d_model (4 heads when they fit, else fewer)."""
    attn = get_primitive("attn")
    for n in (4, 2, 1):
        cfg = attn.Config(n_heads=n)
        if not attn.check(d_model, cfg):
            return cfg
    return attn.Config(n_heads=1, head_dim=2 * max(1, d_model // 2))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fwd_bwd(modules: dict[str, torch.nn.Module], lengths: list[int], d_model: int, batch: int,
                 repeats: int, device: torch.device) -> dict[str, list[float]]:
    """Minimum over `repeats` of one forward + backward, seconds (one thread's CPU time on CPU), per module
    and length.

    Rounds go over every module and length in turn, so a burst of load on a shared machine hits them
    alike; one warm-up call each first (allocator, lazy init).
    """
    # On CPU, the CPU time of one thread: other processes on a shared machine do not inflate it (wall time
    # on a loaded 2-core box varied 2x between runs), and no idle OpenMP thread spins into it (with 2
    # threads on that box, spinning made a 1 ms step cost 200 ms of CPU time). On a GPU, wall time
    # after a synchronize.
    cpu = device.type != "cuda"
    clock = time.process_time if cpu else time.perf_counter
    threads = torch.get_num_threads()
    if cpu:
        torch.set_num_threads(1)
    try:
        xs = {L: torch.randn(batch, L, d_model, device=device) for L in lengths}
        best = {name: [math.inf] * len(lengths) for name in modules}
        for r in range(repeats + 1):
            for name, m in modules.items():
                for i, L in enumerate(lengths):
                    x = xs[L].clone().requires_grad_(True)
                    _sync(device)
                    t0 = clock()
                    m(x).float().sum().backward()
                    _sync(device)
                    if r > 0:
                        best[name][i] = min(best[name][i], clock() - t0)
    finally:
        torch.set_num_threads(threads)
    return best


def growth_exponent(lengths: list[int], values: list[float]) -> float:
    """Least-squares slope of log(value) against log(length): 1 linear, 2 quadratic."""
    xs, ys = [math.log(v) for v in lengths], [math.log(max(v, 1e-12)) for v in values]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item() if a.numel() else 0.0


# ---------------------------------------------------------------------------------------------- checks


class _Battery:
    """The checks of one validation, sharing the candidate, its config and the spec."""

    def __init__(self, pcls: type[Primitive], cfg: Any, spec: ValidationSpec, metrics: dict[str, Any]):
        self.pcls, self.cfg, self.spec, self.metrics = pcls, cfg, spec, metrics
        self.causal = spec.causal_required
        self.d = spec.d_model
        self.device = torch.device(spec.device)

    def checks(self) -> list[tuple[str, Callable[[], None]]]:
        out = [("build", self.build), ("params", self.params), ("shape_dtype", self.shape_dtype),
               ("gradients", self.gradients), ("batch_independence", self.batch_independence)]
        out += [("causality", self.causality)] if self.causal else []
        out += [("padding", self.padding)]
        out += [] if self.causal else [("noncausal", self.noncausal)]
        return out + [("determinism", self.determinism), ("speed", self.speed), ("overfit", self.overfit),
                      ("growth", self.growth)]

    def mixer(self, d_model: int | None = None, **kw: Any) -> torch.nn.Module:
        return build_mixer(self.pcls, self.cfg, d_model or self.d, self.causal, seed=self.spec.seed, **kw)

    def build(self) -> None:
        mode = "causal" if self.causal else "non-causal"
        try:
            self.mixer()
        except Exception as e:  # noqa: BLE001
            raise _Fail(f"building the {mode} layer at d_model {self.d} raised {type(e).__name__}: "
                        f"{str(e).strip()[:300]}{_candidate_frame(e, self.pcls)}") from None
        if not self.causal:
            try:
                self.pcls(self.d, self.cfg, causal=True)
            except Exception as e:  # noqa: BLE001
                raise _Fail(f"{self.pcls.__name__}(d_model={self.d}, cfg, causal=True) raised {type(e).__name__}: "
                            f"{str(e).strip()[:200]}; the constructor must accept causal=True (a mechanism that is "
                            "non-causal by nature may ignore the flag on a non-causal task)") from None

    def params(self) -> None:
        n = sum(p.numel() for p in self.mixer().parameters())
        self.metrics["params"] = n
        try:
            flops = float(self.pcls.flops_per_token(self.d, self.cfg, self.spec.seq_len))
        except NotImplementedError:
            flops = None
        except Exception:  # noqa: BLE001  (optional for a candidate: a broken formula is not a failure here)
            flops = None
        self.metrics["flops_per_token"] = flops
        limit = self.spec.max_params
        if limit is not None:
            two = " (two causal copies: the encoder's Bidirectional wrapper)" if (
                not self.causal and not self.pcls.native_bidirectional) else ""
            _expect(n <= limit, f"one layer has {n:,} parameters at d_model {self.d}{two}, over the budget of "
                                f"{limit:,} ({n / limit:.2f}x)")

    @torch.no_grad()
    def shape_dtype(self) -> None:
        m = self.mixer().eval()
        for batch, L in ((2, SEQ), (1, self.spec.seq_len)):
            x = inputs(self.d, batch=batch, seq=L)
            y = m(x)
            _expect(isinstance(y, torch.Tensor), f"forward returned {type(y).__name__}, not a tensor")
            _expect(y.shape == x.shape, f"input {tuple(x.shape)} gave output {tuple(y.shape)}; the output must "
                                        "have the input's shape (batch, seq, d_model)")
            _expect(y.dtype == x.dtype, f"fp32 input gave a {y.dtype} output")
            _expect(bool(torch.isfinite(y).all()), f"non-finite outputs at seq {L} (fp32, init std 0.02)")
        x = inputs(self.d, batch=2, seq=SEQ)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = m(x)
        _expect(y.shape == x.shape, f"under bf16 autocast input {tuple(x.shape)} gave output {tuple(y.shape)}")
        _expect(y.is_floating_point() and bool(torch.isfinite(y.float()).all()),
                f"under bf16 autocast the output ({y.dtype}) is not finite")

    def gradients(self) -> None:
        m = self.mixer()
        # As models.contract.check_gradients: every parameter moves off its init first, so that a legitimate
        # zero init (output projections) does not stop gradients; this checks wiring, not init.
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.05 * torch.randn_like(p))
        x = inputs(self.d).requires_grad_(True)
        (m(x) * torch.randn(x.shape)).sum().backward()
        _expect(x.grad is not None and bool(torch.isfinite(x.grad).all()) and x.grad.abs().sum() > 0,
                "the input gets no finite, non-zero gradient")
        for name, p in m.named_parameters():
            _expect(p.grad is not None, f"parameter {name} gets no gradient (unused in forward, or detached)")
            _expect(bool(torch.isfinite(p.grad).all()), f"parameter {name} has a non-finite gradient "
                                                        f"({int((~torch.isfinite(p.grad)).sum())} entries)")
            _expect(p.grad.abs().sum() > 0, f"parameter {name} has an all-zero gradient")

    def batch_independence(self) -> None:
        m = self.mixer(std=0.2)  # train mode: BatchNorm and friends mix rows only there
        x = inputs(self.d, batch=3)
        x2 = x.clone()
        x2[1] = torch.randn(x2[1].shape, generator=torch.Generator().manual_seed(4)) * 3
        with torch.no_grad():
            torch.manual_seed(11)  # same dropout masks in both calls
            y = m(x)
            torch.manual_seed(11)
            y2 = m(x2)
        leak = max(_max_diff(y[0], y2[0]), _max_diff(y[2], y2[2]))
        _expect(leak <= ATOL, f"changing row 1 of a batch of 3 moved rows 0 and 2 by up to {leak:.2e} "
                              f"(tolerance {ATOL:.0e}); rows of a batch are separate sequences")

    def causality(self) -> None:
        check_causality(self.pcls, self.cfg, self.d)
        m = build_mixer(self.pcls, self.cfg, self.d, True, std=0.2)
        x = inputs(self.d).requires_grad_(True)
        t = SEQ // 2
        m(x)[:, :t + 1].sum().backward()
        leak = x.grad[:, t + 1:].abs().max().item()
        scale = max(1.0, x.grad[:, :t + 1].abs().max().item())
        _expect(leak <= 1e-6 * scale, f"outputs at positions <= {t} have a gradient of up to {leak:.2e} with "
                                      f"respect to inputs after {t}; they must not depend on later tokens")

    def padding(self) -> None:
        check_padding(self.pcls, self.cfg, self.d)
        check_classifier_padding(self.pcls, self.cfg, self.d)

    def noncausal(self) -> None:
        check_noncausal(self.pcls, self.cfg, self.d)

    def determinism(self) -> None:
        check_determinism(self.pcls, self.cfg, self.d)

    def speed(self) -> None:
        s = self.spec
        attn = build_mixer(get_primitive("attn"), _attention_cfg(self.d), self.d, self.causal)
        mods = {"candidate": self.mixer().to(self.device), "attention": attn.to(self.device)}
        t = time_fwd_bwd(mods, [s.seq_len], self.d, s.speed_batch, s.speed_repeats, self.device)
        tc, ta = t["candidate"][0], t["attention"][0]
        self.metrics["speed"] = {"seq_len": s.seq_len, "d_model": self.d, "batch": s.speed_batch,
                                 "candidate_ms": round(tc * 1e3, 3), "attention_ms": round(ta * 1e3, 3),
                                 "ratio": round(tc / ta, 3)}
        if s.time_ratio_vs_attention is not None:
            _expect(tc <= s.time_ratio_vs_attention * ta,
                    f"forward + backward at seq_len {s.seq_len}, d_model {self.d}, batch {s.speed_batch} takes "
                    f"{tc * 1e3:.2f} ms, {tc / ta:.1f}x the built-in attention's {ta * 1e3:.2f} ms (allowed: "
                    f"{s.time_ratio_vs_attention:g}x)")

    def overfit(self) -> None:
        s = self.spec
        base = spec_for(self.pcls, self.cfg, self.d)
        arch = dataclasses.replace(base, pattern=[self.pcls.name, "mlp"], vocab_size=s.overfit_vocab).validate()
        torch.manual_seed(s.seed)
        clf = SequenceClassifier(arch, num_classes=s.overfit_classes, pooling="first").to(self.device)
        g = torch.Generator().manual_seed(s.seed + 1)
        tokens = torch.randint(1, s.overfit_vocab, (s.overfit_sequences, s.overfit_seq_len), generator=g)
        tokens[:, 0] = 0  # one "CLS" token for all: the pooled position tells them apart only through the mixer
        labels = torch.randint(0, s.overfit_classes, (s.overfit_sequences,), generator=g)
        tokens, labels = tokens.to(self.device), labels.to(self.device)
        opt = torch.optim.AdamW(clf.parameters(), lr=s.overfit_lr, weight_decay=0.0)
        n = s.overfit_sequences
        loss_v, right = math.nan, 0
        for step in range(s.overfit_steps + 1):
            logits = clf(tokens)
            loss = F.cross_entropy(logits.float(), labels)
            loss_v = loss.item()
            _expect(math.isfinite(loss_v), f"the training loss became {loss_v} at step {step} (finite before); "
                                           "outputs or gradients overflow as the weights change")
            right = int((logits.argmax(-1) == labels).sum())
            if right == n and loss_v < s.overfit_loss:
                self.metrics["overfit"] = {"steps": step, "loss": round(loss_v, 4)}
                return
            if step == s.overfit_steps:
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        self.metrics["overfit"] = {"steps": None, "loss": round(loss_v, 4), "right": right}
        raise _Fail(f"a one-layer classifier [candidate, mlp] (d_model {self.d}) did not memorise {n} random "
                    f"sequences of {s.overfit_seq_len} tokens with random labels in {s.overfit_steps} steps (AdamW, "
                    f"lr {s.overfit_lr:g}): {right}/{n} right, loss {loss_v:.3f} (needs {n}/{n} and loss < "
                    f"{s.overfit_loss:g}; the built-in attention needs well under a third of the steps)")

    def growth(self) -> None:
        s = self.spec
        base = s.growth_seq_len or s.seq_len
        lengths = [base, 2 * base, 4 * base]
        width = s.growth_d_model
        try:  # the config may not fit the small width (heads, state sizes): then measure at the task's
            m = self.mixer(width)
            m(torch.randn(1, 8, width))
        except Exception:  # noqa: BLE001
            width = self.d
            m = self.mixer(width)
        device = torch.device(s.growth_device)
        m = m.to(device)
        t = time_fwd_bwd({"candidate": m}, lengths, width, s.growth_batch, s.growth_repeats, device)["candidate"]
        exponent = growth_exponent(lengths, t)
        report: dict[str, Any] = {"lengths": lengths, "d_model": width, "batch": s.growth_batch,
                                  "ms": [round(v * 1e3, 3) for v in t], "exponent": round(exponent, 3)}
        if device.type == "cuda":
            peaks = []
            for L in lengths:
                x = torch.randn(s.growth_batch, L, width, device=device, requires_grad=True)
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
                before = torch.cuda.memory_allocated(device)
                m(x).float().sum().backward()
                torch.cuda.synchronize(device)
                peaks.append(max(torch.cuda.max_memory_allocated(device) - before, 1))
            report["peak_mb"] = [round(p / 2**20, 3) for p in peaks]
            report["memory_exponent"] = round(growth_exponent(lengths, peaks), 3)
        self.metrics["growth"] = report
        bound = s.max_growth_exponent
        if bound is not None:
            shown = ", ".join(f"{v * 1e3:.2f} ms at {L}" for L, v in zip(lengths, t))
            _expect(exponent <= bound, f"forward + backward time grows as L^{exponent:.2f} ({shown}; d_model "
                                       f"{width}), over the bound L^{bound:g} this task sets (sub-quadratic "
                                       "required)")


# ---------------------------------------------------------------------------------------------- entry points


def _declaration(pcls: type, cfg: Any, d_model: int) -> None:
    name = getattr(pcls, "name", None)
    _expect(isinstance(name, str) and name != "", f"`name` must be a non-empty string, got {name!r}")
    Config = getattr(pcls, "Config", None)
    _expect(isinstance(Config, type) and dataclasses.is_dataclass(Config),
            f"`Config` must be a dataclass, got {Config!r}")
    _expect(getattr(pcls, "role", None) == "sequence",
            f"role is {getattr(pcls, 'role', None)!r}; a candidate is a token mixer: role = \"sequence\"")
    try:
        with registered(pcls):
            pass
    except ValueError:
        raise _Fail(f"the name {name!r} belongs to another primitive (a built-in or an earlier candidate); "
                    "choose a unique name") from None
    check_declaration(pcls, cfg, d_model)


def validate(pcls: type[Primitive], cfg: Any = None, spec: ValidationSpec | None = None,
             knobs: dict[str, Any] | None = None) -> ValidationReport:
    """Run the battery on a candidate class (cfg: its Config defaults, with `knobs` set) at `spec`.

    Never raises for a broken candidate: the report says what failed. Runs the candidate's code in this
    process (see the module docstring).
    """
    spec = spec or ValidationSpec()
    report = ValidationReport()
    holder: dict[str, Any] = {"cfg": cfg}

    def declaration() -> None:
        if holder["cfg"] is None:
            Config = getattr(pcls, "Config", None)
            _expect(isinstance(Config, type) and dataclasses.is_dataclass(Config),
                    f"`Config` must be a dataclass, got {Config!r}")
            try:
                holder["cfg"] = Config(**(knobs or {}))
            except TypeError as e:
                fields = ", ".join(f.name for f in dataclasses.fields(Config)) or "none"
                raise _Fail(f"{Config.__name__}(**{knobs or {}}) raised: {e} (fields: {fields})") from None
        _declaration(pcls, holder["cfg"], spec.d_model)

    report.results.append(_run("declaration", declaration, spec.budget_s, pcls))
    if not report.ok:
        return report
    battery = _Battery(pcls, holder["cfg"], spec, report.metrics)
    with registered(pcls):
        for name, fn in battery.checks():
            report.results.append(_run(name, fn, spec.budget_s, pcls))
            if not report.results[-1].passed:
                break
    return report


def _static(source: str, report: ValidationReport) -> bool:
    """Syntax, imports and structure, read and not run, as results of the report; True when all pass."""
    start = time.perf_counter()
    try:
        parse(source)
    except CandidateError as e:
        report.results.append(ValidationResult("syntax", False, round(time.perf_counter() - start, 4), str(e)))
        return False
    report.results.append(ValidationResult("syntax", True, round(time.perf_counter() - start, 4)))
    for name, fn in (("imports", check_imports), ("structure", check_structure)):
        start = time.perf_counter()
        problems = fn(source)
        report.results.append(ValidationResult(name, not problems, round(time.perf_counter() - start, 4),
                                               "; ".join(problems)))
        if problems:
            return False
    return True


def validate_file(path: str | Path, spec: ValidationSpec | None = None,
                  knobs: dict[str, Any] | None = None) -> ValidationReport:
    """Validate the candidate file at `path`: syntax, imports and structure (read, not run), then load it
    (models.contract.primitives_in) and run the battery on its one primitive."""
    spec = spec or ValidationSpec()
    path = Path(path)
    report = ValidationReport()
    try:
        source = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        report.results.append(ValidationResult("load", False, 0.0, f"cannot read {path}: {e}"))
        return report
    if not _static(source, report):
        return report
    start = time.perf_counter()
    try:
        with primitives_in(path) as classes:
            report.results.append(ValidationResult("load", True, round(time.perf_counter() - start, 4)))
            if len(classes) != 1:
                names = ", ".join(c.__name__ for c in classes)
                report.results.append(ValidationResult(
                    "structure", False, 0.0, f"the file defines {len(classes)} primitives at import ({names}); "
                                             "a candidate defines exactly one"))
                return report
            inner = validate(classes[0], None, spec, knobs)
    except PrimitiveFileError as e:
        report.results.append(ValidationResult("load", False, round(time.perf_counter() - start, 4), str(e)))
        return report
    report.results.extend(inner.results)
    report.metrics.update(inner.metrics)
    return report


def validate_source(source: str, spec: ValidationSpec | None = None,
                    knobs: dict[str, Any] | None = None) -> ValidationReport:
    """validate_file on `source` written to a temporary file (named candidate.py)."""
    with tempfile.TemporaryDirectory(prefix="aira-candidate-") as tmp:
        path = Path(tmp) / "candidate.py"
        path.write_text(source)
        return validate_file(path, spec, knobs)
