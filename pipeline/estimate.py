"""Estimated GPU-hours of each step, from the stages' own configs, for the plan and `--dry-run`.

GPU-hours = FLOPs / (peak bf16 FLOP/s of estimate.gpu x estimate.mfu) / 3600, with
  pretrain  C = 3 x forward FLOPs per token at the run's seq_len x D (what pretrain/ and eval/scaling count;
            close to 6·N·D for a dense model), D = train.steps x batch x seq_len, or train.tokens, or
            train.tokens_per_param x N; N = forward FLOPs per token at length 1 / 2 (every weight does one
            multiply-add per token), plus the embedding when it is not tied to the head.
            A design is estimated as the baseline at the same scale: compose extrapolates to the baseline's
            parameter count (within 5%), and widths mode trains at the baseline's width.
  search    workers x search.time_limit_s when there is a time limit, else search.max_evals x 6 x
            space.max_params x proxy.tokens (an upper bound: proxies are usually smaller than max_params).
  eval_lm   2 x N x estimate.eval_tokens (forward passes only).
  others    CPU work: 0.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aira.config import ConfigError
from pipeline.config import PipelineConfig, config_path


@dataclass(frozen=True)
class Size:
    """One pretrain run's estimate: parameters, tokens, training FLOPs, GPU-hours and how they were counted."""

    params: float
    tokens: float
    flops: float
    gpu_hours: float
    how: str


@contextmanager
def _as_file(value: Any, what: str, scale: str | None = None):
    """A stage config given as a path ({scale} filled in) or as an inline mapping, as a YAML file."""
    if not isinstance(value, dict):
        text = str(value).replace("{scale}", scale) if scale is not None else str(value)
        yield config_path(text, what)
        return
    import yaml

    with tempfile.TemporaryDirectory(prefix="aira-pipeline-") as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(value, sort_keys=False))
        yield path


class Estimator:
    def __init__(self, cfg: PipelineConfig):
        from pretrain.metrics import GPU_PEAK_BF16

        self.cfg = cfg
        gpu = cfg.estimate.gpu
        if gpu not in GPU_PEAK_BF16:
            raise ConfigError(f"estimate.gpu: {gpu!r} has no peak on file; choose one of {', '.join(GPU_PEAK_BF16)}")
        self.flops_per_s = GPU_PEAK_BF16[gpu] * cfg.estimate.mfu

    def hours(self, flops: float) -> float:
        return flops / self.flops_per_s / 3600

    def assumptions(self) -> list[str]:
        e = self.cfg.estimate
        return [(f"GPU-hours = FLOPs / ({e.gpu} bf16 peak {self.flops_per_s / e.mfu / 1e12:.0f} TFLOP/s x MFU {e.mfu:.0%}) "
                "/ 3600; pretrain C = 3 x forward FLOPs/token x tokens (~6ND), designs as the baseline at their "
                "scale; search = workers x time limit (or evaluations x 6 x max_params x proxy tokens); "
                f"lm-eval = 2N x {e.eval_tokens:.0e} tokens; see pipeline/estimate.py")]

    def search(self, value: Any, overrides: list[str]) -> tuple[float, str]:
        """(GPU-hours, how) of the search; loading its config here also checks it before anything runs."""
        from aira.config import load_config
        from compose.config import ComposeConfig

        with _as_file(value, "search.config") as path:
            cfg = load_config(ComposeConfig, path, overrides).check()
        s = cfg.search
        if s.time_limit_s:
            return s.n_workers * s.time_limit_s / 3600, f"{s.n_workers} workers x {s.time_limit_s / 3600:.3g} h"
        if s.max_evals:
            n = cfg.space.max_params or 1_500_000
            flops = s.max_evals * 6.0 * n * cfg.proxy.tokens
            return self.hours(flops), f"{s.max_evals} evals x 6 x {n:.3g} params x {cfg.proxy.tokens:.3g} tokens"
        return 0.0, "no time or evaluation limit: unknown"

    def pretrain(self, value: Any, scale: str, overrides: list[str]) -> Size:
        """The baseline's pretrain run at `scale` (its config, the pipeline's overrides)."""
        from compose.proxy import spec_flops_per_token
        from pretrain.config import load_config
        from pretrain.train import resolve_spec

        with _as_file(value, "pretrain.config", scale) as path:
            run = load_config(path, overrides)
        spec = resolve_spec(run)
        params = spec_flops_per_token(spec, 1) / 2 + (0 if spec.tie_embeddings else spec.vocab_size * spec.d_model)
        seq = run.data.seq_len
        tokens = float(run.steps_for(round(params)) * run.train.batch_size * seq)
        flops = 3 * spec_flops_per_token(spec, seq) * tokens
        return Size(params, tokens, flops, self.hours(flops),
                    f"N {params:.3g}, D {tokens:.3g} tokens, C {flops:.3g} FLOPs")

    def eval_lm(self, params: float) -> tuple[float, str]:
        flops = 2 * params * self.cfg.estimate.eval_tokens
        return self.hours(flops), f"2 x {params:.3g} params x {self.cfg.estimate.eval_tokens:.3g} tokens"
