"""AIRA-Compose as a search task: proposals are layer patterns, evaluation is a proxy training run.

The built-in operators (the `none` LLM backend) are grammar mutations and crossover from
compose.mutations; `debug` repairs a pattern that broke a constraint. The evaluation runs in a
worker process (compose.task:evaluate) and returns the proxy metrics. The hidden test split is
scored too (a forward pass, cheap next to training) and journalled as `test_*` metrics, which the
coordinator strips from everything agents see: it serves only the final ranking, the same
evaluation for every candidate (AIRA_2's hidden consistent evaluation).
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.journal import Node
from agents.policies import Action
from agents.search import Proposal
from aira.errors import UserError
from compose.mutations import crossover, mutate
from compose.results import PROXY_METRICS  # proxy task -> the metric it ranks by (lower is better)
from compose.space import SearchSpace
from compose.surrogate import PatternSurrogate, SurrogateConfig
from models.errors import SpecError

RANKED = ("draft", "improve", "crossover")  # operators whose proposals a surrogate ranks


@dataclass
class DataConfig:
    source: str = "stdlib"  # "stdlib", local text files / a directory, or a hub dataset name
    caps_mb: dict[str, float] = field(default_factory=lambda: {"train": 4.0, "val": 0.25, "test": 0.25})


def load_data(cfg: DataConfig):
    from compose.data import load_hf_text, load_stdlib

    if cfg.source == "stdlib":
        return load_stdlib(caps_mb=cfg.caps_mb)
    return load_hf_text(cfg.source, caps_mb=cfg.caps_mb)




class ComposeTask:
    """AIRA-Compose as an agents.search Task: proposes layer patterns, makes each a proxy-training job, keeps its metrics."""

    target = "compose.task:evaluate"

    def __init__(self, space: SearchSpace, proxy: dict[str, Any], data: DataConfig, max_mutations: int = 2,
                 kind: str = "text", mad: dict[str, Any] | None = None, llm: Any = None,
                 ladder: dict[str, Any] | None = None, tabular: dict[str, Any] | None = None,
                 surrogate: dict[str, Any] | None = None, rungs: list[int] | None = None,
                 rung_checkpoints_mb: int = 4096):
        if kind not in PROXY_METRICS:
            raise UserError(f"unknown proxy task {kind!r}; choose one of {', '.join(PROXY_METRICS)}")
        self.space = space
        self.kind = kind
        self.metric = PROXY_METRICS[kind]
        self.proxy = {**proxy, "eval_test": True}  # journalled as test_*, hidden from agents
        self.data = data
        self.mad = dict(mad or {})  # compose.mad.MADConfig fields, for kind == "mad"
        self.ladder = dict(ladder or {})  # compose.ladder.LadderConfig fields, for kind == "ladder"
        self.tabular = dict(tabular or {})  # compose.tabular: table, budget, seed_noise, noise_seed (kind == "tabular")
        self.max_mutations = max_mutations
        self.llm = llm  # compose.llm_ops.LLMProposer writes the proposals; None = the built-in operators
        # compose.surrogate: rank `candidates` proposals of the built-in operators, evaluate the best predicted
        self.surrogate_cfg = SurrogateConfig(**(surrogate or {})).check()
        self.surrogate = PatternSurrogate(space.allowed, self.surrogate_cfg.ridge) if self.surrogate_cfg.on else None
        self._seen: set[str] = set()  # dedup keys of every proposal the search holds (observe)
        # Multi-fidelity policies (asha): rung r trains rungs[r] steps (mad: per task; tabular: the
        # table's budget read). Empty: every evaluation at the config's one budget.
        self.rungs = list(rungs or [])
        self.rung_checkpoints_mb = rung_checkpoints_mb

    @property
    def observes(self) -> bool:
        """Whether agents.search should call observe: only a surrogate learns from it (a resumed search
        reads every payload back for it, so it is not asked for without one)."""
        return self.surrogate is not None

    def observe(self, node: Node) -> None:
        """Called by agents.search for every node it journals and again when it finishes (hidden metrics
        stripped): the keys it holds, and the measured patterns the surrogate learns from."""
        if node.key is not None:
            self._seen.add(node.key)
        if self.surrogate is None or node.status != "done" or not isinstance(node.payload, dict):
            return
        v, pattern = node.metrics.get(self.metric), node.payload.get("pattern")
        if node.payload.get("rung", 0):
            return  # a higher fidelity's score is on another scale; the surrogate ranks rung-0 proposals
        if pattern and isinstance(v, (int, float)) and math.isfinite(v):
            self.surrogate.observe(pattern, v)

    def fidelities(self) -> list[int]:
        """The budget of each rung, lowest first, for a multi-fidelity policy (the config's `rungs`)."""
        if not self.rungs:
            raise UserError("a multi-fidelity policy needs `rungs: [low, ..., high]` (training steps per rung)")
        return self.rungs

    def propose(self, action: Action, rng: random.Random) -> Proposal:
        if action.operator == "promote":  # the same candidate, one rung up: no operator, no LLM
            return self._promoted(action.parents[0])
        if self.llm is not None and action.operator != "suggest":
            pattern, plan = self.llm.propose(action, self)
            return self.check(pattern, plan)
        if self.surrogate is not None and action.operator in RANKED:
            return self._ranked(action, rng)
        return self._operator(action, rng)

    def reevaluate(self, node: Node, i: int) -> Proposal:
        """The i-th re-evaluation of a finalist (agents.search `finalists`): the same design, trained with
        another seed (kind tabular: another measured seed, while the table has one)."""
        payload = {k: v for k, v in node.payload.items() if k != "surrogate"}
        payload |= {"eval_seed": i, "plan": f"re-evaluation {i} of node #{node.seq}",
                    "lineage": node.payload.get("lineage", node.seq)}
        return Proposal(payload, None if node.key is None else f"{node.key}#{i}")

    def _promoted(self, parent: Node) -> Proposal:
        rung = parent.payload.get("rung", 0) + 1
        if rung >= len(self.rungs):
            return Proposal({"pattern": parent.payload.get("pattern")}, None,
                            f"cannot promote: node #{parent.seq} is on the last of {len(self.rungs)} rungs")
        prop = self.check(parent.payload["pattern"], plan=f"promoted to rung {rung} ({self.rungs[rung]} steps)")
        # lineage: the first node of the chain; a tabular lookup draws the same measured seed for all of it
        prop.payload |= {"rung": rung, "lineage": parent.payload.get("lineage", parent.seq)}
        if prop.key is not None:
            prop.key = f"{prop.key}@{self.rungs[rung]}"
        return prop

    def _ranked(self, action: Action, rng: random.Random) -> Proposal:
        """`candidates` proposals of the action's operator; the best predicted one that is new (compose.surrogate)."""
        cfg, new, prop = self.surrogate_cfg, [], None
        for _ in range(cfg.candidates):
            prop = self._operator(action, rng)
            if not prop.error and prop.key not in self._seen and all(prop.key != c.key for c in new):
                new.append(prop)
        if not new:
            return prop  # nothing new among them: the search journals it as invalid, the policy debugs it
        choice = new[0]
        if len(self.surrogate) >= cfg.min_points:
            # Thompson: one posterior draw per step, seeded from the agent's stream (replays draw the same)
            draw = np.random.default_rng(rng.getrandbits(64)) if cfg.acquisition == "thompson" else None
            predicted = self.surrogate.predict([c.payload["pattern"] for c in new], draw)
            best = int(predicted.argmin())
            choice = new[best]
            choice.payload["surrogate"] = {"predicted": float(predicted[best]), "candidates": len(new),
                                           "observed": len(self.surrogate), "acquisition": cfg.acquisition}
            choice.payload["plan"] += f"; surrogate: best predicted of {len(new)} new candidates"
        # _seen is not written here: agents propose concurrently, and the search's own dedup at commit
        # (in agent order) settles two agents choosing the same candidate, the same way every time.
        return choice

    def _operator(self, action: Action, rng: random.Random) -> Proposal:
        """One proposal of the built-in operator the action names."""
        allowed = self.space.allowed
        parents = [n.payload.get("pattern") for n in action.parents]
        if action.operator == "debug" and not parents[0]:  # its operator crashed before writing a pattern
            return self.check(self.space.sample(rng), plan="re-drafted: the parent has no pattern")
        if action.operator == "draft":
            pattern, how = self.space.sample(rng), "random draft"
        elif action.operator == "improve":
            pattern, ops = mutate(parents[0], rng, allowed, n=rng.randint(1, self.max_mutations))
            how = "mutations: " + ", ".join(ops)
        elif action.operator == "crossover":
            pattern, how = crossover(parents[0], parents[1], rng), "one-point crossover"
        elif action.operator == "debug":
            pattern, how = self._repair(parents[0], rng)
        elif action.operator == "analyze":  # what the best designs share: per-position majority vote
            from compose.aggregate import consensus_pattern

            pattern, how = consensus_pattern(parents), f"consensus of the {len(parents)} best designs"
            if not self.space.contains(pattern) or pattern in parents:
                pattern, ops = mutate(pattern, rng, allowed)
                how += ", then mutated: " + ", ".join(ops)
        elif action.operator == "suggest":  # a point from a model-based policy (TPE) in param_space()
            return self._suggested(action.params or {})
        else:
            raise ValueError(f"compose has no operator {action.operator!r}")
        return self.check(pattern, plan=how)

    def check(self, pattern: list[str], plan: str = "") -> Proposal:
        """Validate a pattern against the space; the proposal carries the spec hash as its key."""
        payload = {"pattern": list(pattern), "plan": plan}
        problems = self.space.violations(list(pattern))
        if problems:
            return Proposal(payload, None, "; ".join(problems))
        try:
            spec = self.space.to_spec(pattern).validate()
        except SpecError as e:
            return Proposal(payload, None, str(e))
        payload["spec"] = spec.to_dict()
        return Proposal(payload, spec.hash())

    def param_space(self) -> dict[str, list[str]]:
        """The pattern as Composer's BO encodes it: one categorical per layer position ("layer_00", ...)
        over the allowed primitives. Count and budget constraints are not encoded; points that break
        them are journalled as invalid proposals, which the policy learns to avoid."""
        return {f"layer_{i:02d}": list(self.space.allowed) for i in range(self.space.n_layers)}

    def _suggested(self, params: dict[str, Any]) -> Proposal:
        space = self.param_space()
        missing = [k for k in space if k not in params]
        if missing:
            return Proposal({"params": dict(params), "plan": "TPE suggestion"}, None,
                            f"suggestion lacks {', '.join(missing)}; expected keys {', '.join(space)}")
        prop = self.check([params[k] for k in space], plan="TPE suggestion")
        prop.payload["params"] = {k: params[k] for k in space}
        return prop

    def _repair(self, pattern: list[str], rng: random.Random) -> tuple[list[str], str]:
        """Mutate a broken pattern until it satisfies the space; re-draft if that fails."""
        p = [x if x in self.space.allowed else rng.choice(self.space.allowed) for x in pattern]
        p = (p + [rng.choice(self.space.allowed) for _ in range(self.space.n_layers)])[: self.space.n_layers]
        if self.space.contains(p):  # it broke no constraint (a duplicate, a failed run): change it anyway
            p, _ = mutate(p, rng, self.space.allowed)
        for _ in range(50):
            if self.space.contains(p):
                return p, "repaired by mutation"
            p, _ = mutate(p, rng, self.space.allowed)
        return self.space.sample(rng), "re-drafted: repair failed"

    def job_payload(self, node: Node) -> dict[str, Any]:
        if self.kind == "tabular":
            import hashlib

            # Which measured seed this evaluation gets: fixed by (noise_seed, node, pattern), so a
            # resumed or replayed search sees the same draws and a different noise_seed other ones.
            # A promoted node keeps its lineage's draw: its higher budget is a later read of the same run.
            seq = node.payload.get("lineage", node.seq)
            tag = f"{self.tabular.get('noise_seed', 0)}/{seq}/{'-'.join(node.payload['pattern'])}"
            draw = int(hashlib.sha256(tag.encode()).hexdigest()[:8], 16) + node.payload.get("eval_seed", 0)
            tabular = {**self.tabular, "budget": self._steps(node)} if self.rungs else self.tabular
            return {"kind": "tabular", "pattern": node.payload["pattern"], "tabular": tabular, "draw": draw}
        reseed = node.payload.get("eval_seed", 0)  # a finalist's re-evaluation: another training seed
        if self.kind == "mad":
            mad = {**self.mad, **self._rung_training(node)} if self.rungs else dict(self.mad)
            if reseed:  # another init and batch order on the same data: the finalist's reads share a test set
                if mad.get("data_seed") is None:
                    mad["data_seed"] = mad.get("seed", 0)
                mad["seed"] = mad.get("seed", 0) + reseed
            payload = {"kind": "mad", "spec": node.payload["spec"], "mad": mad}
            if mad.get("checkpoint"):
                payload["checkpoints_mb"] = self.rung_checkpoints_mb
            return payload
        proxy = {**self.proxy, "seed": self.proxy.get("seed", 0) + reseed} if reseed else self.proxy
        payload = {"kind": self.kind, "spec": node.payload["spec"], "proxy": proxy,
                   "data": dataclasses.asdict(self.data)}
        if self.kind == "ladder":
            payload["ladder"] = self.ladder
        return payload

    def _steps(self, node: Node) -> int:
        return self.rungs[node.payload.get("rung", 0)]

    def _rung_training(self, node: Node) -> dict[str, Any]:
        """A rung's MAD training: its steps of a schedule over the top rung's, saved to be continued when
        promoted (checkpoint), continued from the rung below (resume_from). Checkpoints are named by the
        lineage (the chain's first node) and rung, which a replay reproduces; the worker puts them in
        RUN_DIR/checkpoints. Without the file a promotion trains from scratch to the same numbers."""
        rung, lineage = node.payload.get("rung", 0), node.payload.get("lineage", node.seq)
        out: dict[str, Any] = {"steps": self.rungs[rung], "schedule_steps": self.rungs[-1]}
        if node.payload.get("eval_seed"):  # another seed is another run: trained whole, never continued
            return out
        if rung + 1 < len(self.rungs):
            out["checkpoint"] = f"n{lineage}-rung{rung}"
        if rung > 0:
            out["resume_from"] = f"n{lineage}-rung{rung - 1}"
        return out

    def metrics(self, value: dict[str, Any]) -> dict[str, Any]:
        if self.metric not in value:
            raise KeyError(f"the worker's result has no {self.metric!r}")
        if self.kind in ("mad", "tabular"):
            return dict(value)
        keep = ("val_bpb", "val_loss", "test_bpb", "test_loss", "params", "flops_per_token", "tokens",
                "tokens_per_s", "train_s", "wall_s", "peak_mem_bytes", "loss_curve",
                "pred_bpb", "test_pred_bpb", "ladder", "fit_a", "fit_b",
                "dtype", "device")  # what `dtype: auto` became on the worker's machine (bf16 on CPUs with native bf16)
        return {k: value[k] for k in keep if k in value}


def _checkpoint_paths(mad: dict[str, Any]) -> dict[str, Any]:
    """A rung's checkpoint names as files in RUN_DIR/checkpoints (the worker's job dir tells RUN_DIR).
    Run outside a worker there is no run dir: no checkpoint, and a promotion trains from scratch."""
    import os

    from agents.worker import JOB_DIR_ENV

    job_dir = os.environ.get(JOB_DIR_ENV)
    for key in ("checkpoint", "resume_from"):
        if mad.get(key):
            mad[key] = str(Path(job_dir).parents[1] / "checkpoints" / f"{mad[key]}.pt") if job_dir else None
    return mad


def keep_checkpoints(path: Path, score: float, limit_mb: float) -> None:
    """Note the score of the checkpoint just saved at `path` (a .json beside it), then delete the
    worst-scoring checkpoints of its folder until they fit in limit_mb: those are the least likely to be
    promoted, and a promotion without its checkpoint trains from scratch, to the same numbers."""
    import json

    if path.exists():
        path.with_suffix(".json").write_text(json.dumps({"score": score}))
    kept = []
    for note in path.parent.glob("*.json"):
        ckpt = note.with_suffix(".pt")
        try:
            kept.append((json.loads(note.read_text())["score"], ckpt.stat().st_size, ckpt))
        except (OSError, ValueError, KeyError):  # deleted meanwhile by a promotion or another worker
            continue
    total = sum(size for _, size, _ in kept)
    for _, size, ckpt in sorted(kept, key=lambda k: (-k[0], k[2].name)):
        if total <= limit_mb * 2**20:
            break
        _drop_checkpoint(ckpt)
        total -= size


def _drop_checkpoint(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.with_suffix(".json").unlink(missing_ok=True)


def drop_checkpoints(run_dir: Path) -> None:
    """A finished search's rung checkpoints (a later resume trains its promotions from scratch instead)."""
    import shutil

    shutil.rmtree(Path(run_dir) / "checkpoints", ignore_errors=True)


def evaluate(payload: dict[str, Any]) -> dict[str, Any]:
    """Worker entry point: train the proxy of one candidate and return its metrics."""
    from models.spec import ArchSpec

    if payload.get("kind") == "tabular":
        from compose.tabular import evaluate_tabular

        return evaluate_tabular(payload)
    if payload.get("kind", "text") == "mad":
        from compose.mad import MADConfig, evaluate_mad

        mad = _checkpoint_paths(dict(payload["mad"]))
        out = evaluate_mad(ArchSpec.from_dict(payload["spec"]), MADConfig(**mad))
        if mad.get("resume_from"):  # each rung is promoted once: the state below is not needed again
            _drop_checkpoint(Path(mad["resume_from"]))
        if mad.get("checkpoint"):
            keep_checkpoints(Path(mad["checkpoint"]), out["mad_error"], payload.get("checkpoints_mb", 4096))
        return out

    from compose.proxy import ProxyConfig, train_proxy

    proxy = dict(payload["proxy"])
    if "betas" in proxy:
        proxy["betas"] = tuple(proxy["betas"])
    data = load_data(DataConfig(**payload["data"]))
    if payload.get("kind") == "ladder":
        from compose.ladder import LadderConfig, evaluate_ladder

        return evaluate_ladder(payload["spec"], data, ProxyConfig(**proxy), LadderConfig(**payload["ladder"]))
    result = train_proxy(ArchSpec.from_dict(payload["spec"]), data, ProxyConfig(**proxy), progress=False)
    return result.to_dict()
