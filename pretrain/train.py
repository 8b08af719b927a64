"""The pretraining loop: DeepSpeed engine, packed data, metrics, checkpoints, resume and preemption.

Everything a run needs to continue lives in RUN_DIR: config.yaml (the resolved config), spec.yaml,
data/ (the packed tokens), checkpoints/, metrics.jsonl. All checks that can fail on bad input (config,
spec, tokenizer vocab, batch split across ranks, checkpoint match) run before the engine is built.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import signal
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from aira.config import make_run_dir
from models import runtime
from models.errors import SpecError
from models.spec import ArchSpec
from pretrain import bpb, checkpoint
from pretrain.config import RunConfig, load_config, to_yaml
from pretrain.data import check_source
from pretrain.distributed import DistEnv, init_distributed, select_accelerator, setup_env
from pretrain.errors import PretrainError
from pretrain.metrics import MetricsLog, memory_bytes, peak_flops, start_wandb
from pretrain.tokenizer import load_tokenizer

PREEMPTED = 75  # exit status after a SIGTERM / SIGUSR1 checkpoint (EX_TEMPFAIL: "try again", i.e. resume)


def resolve_spec(cfg: RunConfig) -> ArchSpec:
    """The model spec: a preset, a spec file, or an inline mapping; model.vocab_size replaces its vocab."""
    from models.presets import load_spec

    s = cfg.model.spec
    try:
        spec = ArchSpec.from_dict(dict(s)) if isinstance(s, dict) else load_spec(str(s))
        if cfg.model.vocab_size is not None:
            spec = spec.replace(vocab_size=cfg.model.vocab_size)
        return spec.validate()
    except SpecError as e:
        raise PretrainError(f"model.spec: {e}") from None


def check_batch(cfg: RunConfig, world_size: int) -> int:
    """Gradient accumulation steps; PretrainError when the global batch does not split across ranks."""
    t = cfg.train
    per_step = t.micro_batch_size * world_size
    if t.batch_size % per_step:
        raise PretrainError(f"train.batch_size {t.batch_size} does not divide into micro-batches of "
                            f"{t.micro_batch_size} on {world_size} process(es) ({per_step} sequences per "
                            "accumulation step); make batch_size a multiple of micro_batch_size x processes")
    return t.batch_size // per_step


class _StopFlag:
    """Set by SIGTERM / SIGUSR1 (SLURM's preemption warnings); the loop checkpoints and exits at a step end."""

    def __init__(self):
        self.signal: int | None = None
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.signal = signum


def _say(env: DistEnv, *parts: Any) -> None:
    if env.is_main:
        print(*parts, flush=True)


def _quiet_deepspeed() -> None:
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*reduce_scatter_tensor.*")
    warnings.filterwarnings("ignore", message=".*all_gather_into_tensor.*")


@torch.no_grad()
def validate(engine: Any, data: Any, cfg: RunConfig, device: torch.device, env: DistEnv,
             target_bytes: bpb.TargetBytes) -> tuple[float, float]:
    """(mean val loss in nats per token, bits per byte) over all ranks.

    Bits per byte = the nats of the scored targets / (ln 2 x the UTF-8 bytes those very targets decode
    to, from `target_bytes`: pretrain.bpb), not a split-wide bytes/token ratio.
    Each rank scores its share of the windows (padding batches keep every rank in every forward, as
    ZeRO-3 needs, and count for nothing); the sums of nats, targets and bytes are all-reduced.
    """
    engine.eval()
    sums = torch.zeros(3, dtype=torch.float64)  # [sum of loss x targets, targets, bytes of the targets]
    for x, y, real in data.val_windows(cfg.train.micro_batch_size, cfg.train.val_tokens, env.rank,
                                       env.world_size):
        loss = engine(x.to(device), y.to(device)).loss
        if real:
            sums += torch.tensor([float(loss) * y.numel(), y.numel(), target_bytes(x, y)],
                                 dtype=torch.float64)
    engine.train()
    dist.all_reduce(sums)
    return float(sums[0] / sums[1]), float(sums[0] / (math.log(2) * sums[2]))


@dataclass
class Run:
    """One pretraining run as the loop takes it: everything settled and checked before any compute."""

    cfg: RunConfig
    env: DistEnv
    accel: str  # the DeepSpeed accelerator and why, a sentence for the log
    accum: int  # gradient accumulation steps per optimizer step
    spec: ArchSpec
    tok: Any  # pretrain.tokenizer.Tokenizer
    run_dir: Path
    # What a resume must match (spec, world size, ZeRO stage, batch, data order, LR curve): checked against
    # the checkpoint's meta.json at resume and written into every checkpoint's meta.json.
    compat: dict[str, Any]
    resume_tag: str | None = None  # the checkpoint to continue from; None for a fresh run

    @property
    def ckpt_root(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", self.env.local_rank) if torch.cuda.is_available() else torch.device("cpu")


def prepare(cfg: RunConfig, resume: bool = False) -> Run:
    """The run of cfg with every check that can fail on bad input done (config, spec, tokenizer, batch
    split, checkpoint match); PretrainError says what to change."""
    env = setup_env()
    accel = select_accelerator()
    cfg = cfg.check()
    accum = check_batch(cfg, env.world_size)
    run_dir = cfg.directory()
    if not resume and checkpoint.latest_tag(run_dir / "checkpoints") is not None:
        raise PretrainError(f"{run_dir} already holds checkpoints; continue it with `aira pretrain resume "
                            f"{run_dir}` or pick another name= / run_dir=")
    spec = resolve_spec(cfg)
    check_source(cfg.data)
    tok = load_tokenizer(cfg.data.tokenizer)
    if tok.vocab_size > spec.vocab_size:
        raise PretrainError(f"the tokenizer {tok.name} has {tok.vocab_size} ids but the spec's vocab_size is "
                            f"{spec.vocab_size}; set model.vocab_size={tok.vocab_size} (or larger)")
    if cfg.data.seq_len > spec.max_seq_len:
        raise PretrainError(f"data.seq_len {cfg.data.seq_len} exceeds the spec's max_seq_len {spec.max_seq_len}")
    compat = {"spec_hash": spec.hash(), "world_size": env.world_size, "zero_stage": cfg.train.zero_stage,
              "batch_size": cfg.train.batch_size, "seq_len": cfg.data.seq_len, **_order_meta(cfg)}
    r = Run(cfg, env, accel, accum, spec, tok, run_dir, compat)
    if resume:
        r.resume_tag = checkpoint.check(r.ckpt_root, compat)[0]
    return r


def run(cfg: RunConfig, resume: bool = False) -> int:
    """Train (or continue) the run of cfg; returns the exit status (0 done, PREEMPTED after a signal)."""
    r = prepare(cfg, resume)
    _quiet_deepspeed()
    init_distributed(r.env)
    try:
        with runtime.running_on(r.device, r.cfg.train.threads):  # threads: CPU runs only
            return _train(r)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _order_meta(cfg: RunConfig) -> dict[str, Any]:
    """What fixes the data order and the LR curve: a resume that changes any of it is refused."""
    meta = {**_stream_meta(cfg), "seed": cfg.train.seed, "steps": cfg.train.steps, "tokens_budget": cfg.train.tokens,
            "tokens_per_param": cfg.train.tokens_per_param, "optim": dataclasses.asdict(cfg.optim)}
    return json.loads(json.dumps(meta))  # as meta.json stores it (tuples become lists), so it compares equal


def _stream_meta(cfg: RunConfig) -> dict[str, Any]:
    """What a streamed run's position depends on (absent for packed data, so old checkpoints still match)."""
    return {"shuffle_docs": cfg.data.shuffle_docs} if cfg.data.streaming else {}


def _load_data(cfg: RunConfig, env: DistEnv, tok: Any, run_dir: Path):
    """Rank 0 reads and tokenizes into RUN_DIR/data; the other ranks wait and read its files."""
    from pretrain.data import load_packed

    data = None
    if env.is_main:
        data = load_packed(cfg.data, tok, run_dir / "data", seed=cfg.train.seed)
    dist.barrier()
    return data or load_packed(cfg.data, tok, run_dir / "data", seed=cfg.train.seed)


def _train(r: Run) -> int:
    from models.accounting import train_flops_per_token
    from pretrain.engine import build_engine, build_model

    cfg, env, spec, tok, run_dir, ckpt_root, device = r.cfg, r.env, r.spec, r.tok, r.run_dir, r.ckpt_root, r.device
    # bf16 on CPU never: it goes through DeepSpeed, whose CPU bf16 is emulated and slower than fp32.
    dtype = runtime.resolve_dtype(cfg.train.dtype, device, bf16_on_cpu=False)
    if env.is_main:
        make_run_dir(run_dir)
    data = _load_data(cfg, env, tok, run_dir)
    stream = None
    if cfg.data.streaming:
        from pretrain.stream import TokenStream

        stream = TokenStream(cfg.data, tok, cfg.train.seed, env.rank, env.world_size)
    model = build_model(spec, cfg)
    n_params = model.num_params()
    steps = cfg.steps_for(n_params)
    engine = build_engine(model, cfg, steps, env.world_size, dtype)

    start = 0
    resume_tag = r.resume_tag
    if resume_tag is not None:
        client = checkpoint.load(engine, ckpt_root, resume_tag)
        if client.get("data_fingerprint") != data.fingerprint:
            raise PretrainError(f"checkpoint {resume_tag} was trained on data {client.get('data_fingerprint')}, "
                                f"but {run_dir / 'data'} holds {data.fingerprint}")
        start = int(client["step"])
        if stream is not None:
            stream.load_state_dict(client["streams"][env.rank])
        checkpoint.set_rng_state(client["rng"])
    if env.is_main:
        (run_dir / "config.yaml").write_text(to_yaml(cfg))
        spec.save(run_dir / "spec.yaml")
        tok.save(run_dir)
        if resume_tag is not None:
            MetricsLog.truncate(run_dir / "metrics.jsonl", start)

    target_bytes = bpb.TargetBytes.of(tok)
    mb, seq = cfg.train.micro_batch_size, cfg.data.seq_len
    batch_tokens = cfg.train.batch_size * seq
    flops_per_token = train_flops_per_token(spec, seq)
    peak, peak_src = peak_flops(dtype)
    _say(env, "config:\n" + to_yaml(cfg))
    _say(env, f"pretrain: {r.accel}; {env.world_size} process(es), ZeRO-{cfg.train.zero_stage}, {dtype}")
    _say(env, f"model {spec.name or spec.hash()} [{spec.hash()}]: {n_params:,} params, "
              f"{flops_per_token / 1e6:.1f} MFLOP/token (train); tokenizer {tok.name} ({tok.vocab_size} ids)")
    train_desc = (f"streamed train (shard {env.rank} of {env.world_size} per process)" if stream is not None
                  else f"{data.train.size:,} train")
    _say(env, f"data {cfg.data.source} [{data.fingerprint}]: {train_desc} / {data.val.size:,} val "
              f"tokens; {steps} steps x {cfg.train.batch_size} x {seq} = {steps * batch_tokens:,} tokens "
              f"({r.accum} accumulation step(s) of {mb} per process)")
    if stream is not None and env.is_main:  # the same split rule on every rank; said once
        _say(env, f"streamed train: {stream.shard.mode}")
    _say(env, f"run dir {run_dir}" + (f"; resumed from {resume_tag} (step {start})" if resume_tag else ""))

    run_id = json.loads((run_dir / "run.json").read_text())["id"] if (run_dir / "run.json").is_file() else None
    if env.is_main:
        run_id = run_id or f"{cfg.name}-{int(time.time())}"
        # What `dtype: auto` and the device became on this machine (config.yaml keeps `auto`).
        (run_dir / "run.json").write_text(json.dumps({"id": run_id, "dtype": dtype, "accelerator": r.accel}))
    wandb_run = (start_wandb(cfg.log.wandb, cfg.log.wandb_project, cfg.name, run_dir, dataclasses.asdict(cfg),
                             run_id) if env.is_main else None)
    log = MetricsLog(run_dir / "metrics.jsonl", env.is_main, wandb_run)
    bar = None
    if env.is_main and cfg.log.progress and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=steps, initial=start, desc=f"pretrain {cfg.name}", unit="step", file=sys.stderr)
    stop = _StopFlag()
    meta = {**r.compat, "data_fingerprint": data.fingerprint}

    def save(step: int) -> None:
        client = {"step": step, "rng": checkpoint.rng_state(), "data_fingerprint": data.fingerprint}
        if stream is not None:  # every rank's position in its shard, gathered so rank 0's file holds all
            streams: list[Any] = [None] * env.world_size
            dist.all_gather_object(streams, stream.state_dict())
            client["streams"] = streams
        checkpoint.save(engine, ckpt_root, step, {**meta, "tokens": step * batch_tokens}, client, env.is_main,
                        cfg.train.keep_checkpoints)

    engine.train()
    t_run = time.perf_counter()
    status = 0
    try:
        for step in range(start, steps):
            t0 = time.perf_counter()
            lr = engine.get_lr()[0]
            loss_sum = torch.zeros((), dtype=torch.float64)
            for micro in range(r.accum):
                if stream is not None:  # the rank's own shard, in order: its position is in the checkpoint
                    x, y = stream.batch(mb)
                else:  # packed: sample indices are a function of (step, micro-batch, rank)
                    first = step * cfg.train.batch_size + (micro * env.world_size + env.rank) * mb
                    x, y = data.batch(first, mb)
                loss = engine(x.to(device), y.to(device)).loss
                engine.backward(loss)
                engine.step()
                loss_sum += float(loss.detach())
            # One small all-reduce per step: the mean loss over ranks, and whether any rank got a signal.
            flags = torch.tensor([loss_sum / r.accum, float(stop.signal is not None)], dtype=torch.float64)
            dist.all_reduce(flags)
            loss_mean, stopping = float(flags[0]) / env.world_size, bool(flags[1] > 0)
            if not math.isfinite(loss_mean):
                raise PretrainError(f"training diverged: loss {loss_mean} at step {step + 1}; lower optim.lr "
                                    f"({cfg.optim.lr}) or check the spec")
            dt = time.perf_counter() - t0
            done = step + 1
            grad_norm = engine.get_global_grad_norm()
            tps = batch_tokens / dt
            record = {"kind": "train", "step": done, "tokens": done * batch_tokens, "loss": loss_mean, "lr": lr,
                      "grad_norm": None if grad_norm is None else float(grad_norm), "tokens_per_s": tps,
                      "mfu": tps * flops_per_token / peak if peak else None, "mem_bytes": memory_bytes(),
                      "elapsed_s": time.perf_counter() - t_run}
            log.write(record)
            if bar is not None:
                bar.set_postfix(loss=f"{loss_mean:.3f}", lr=f"{lr:.2e}", tok_s=f"{tps:,.0f}", refresh=False)
                bar.update(1)
            elif done % cfg.train.log_every == 0 or done == steps:
                _say(env, f"step {done}/{steps} loss {loss_mean:.4f} lr {lr:.2e} grad_norm "
                          f"{record['grad_norm'] or 0:.3f} {tps:,.0f} tok/s mfu {100 * (record['mfu'] or 0):.2f}%")
            if done % cfg.train.val_every == 0 or done == steps:
                val_loss, val_bpb = validate(engine, data, cfg, device, env, target_bytes)
                log.write({"kind": "val", "step": done, "tokens": done * batch_tokens, "val_loss": val_loss,
                           "val_bpb": val_bpb})
                _say(env, f"step {done}: val loss {val_loss:.4f}, {val_bpb:.4f} bits per byte")
            if done % cfg.train.ckpt_every == 0 or done == steps or stopping:
                save(done)
            if stopping and done < steps:
                _say(env, f"stopped by a signal at step {done}; checkpoint saved. Continue with "
                          f"`aira pretrain resume {run_dir}`")
                status = PREEMPTED
                break
    finally:
        if bar is not None:
            bar.close()
        log.close()
    if status == 0:
        _say(env, f"done: {steps} steps in {time.perf_counter() - t_run:.1f} s; peak memory "
                  f"{memory_bytes() / 2**20:.0f} MiB; MFU peak from {peak_src}; metrics in {run_dir / 'metrics.jsonl'}")
    return status


def resume(run_dir: str | Path, overrides: list[str] | None = None) -> int:
    """Continue RUN_DIR from its newest checkpoint with its saved config (plus `key=value` overrides)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise PretrainError(f"{run_dir} is not a pretrain run directory (no config.yaml)")
    cfg = load_config(path, [*(overrides or []), f"run_dir={run_dir}"])
    return run(cfg, resume=True)
