"""ScriptTask: what agents.search.Search drives for the fixed-time training-script task.

A node's payload is a whole train.py (`source`, its normalised-source hash `code`), the seed it runs
with and its `kind`:

    baseline   the starting train.py, seeds 0..k-1: measures sigma (design/script/noise.py)
    candidate  an edit of the incumbent (autoresearch's loop: edit the current best, keep or reset)
    rerun      a finalist on an extra seed, for the final ranking

The key is `<code>/s<seed>`: the same script with the same seed is evaluated once. The search's metric
is `score`, the incumbent chain: the baseline's mean val_bpb on the baseline nodes, then each kept
candidate's val_bpb; discarded, failed and re-run nodes have none, so a greedy policy always improves
the incumbent. `metrics` decides keep / discard as results come in (in the order the coordinator records
them, which a replay reproduces); `restore` rebuilds that state from the journal on resume.
"""

from __future__ import annotations

import random
from typing import Any

from agents.journal import Journal, Node
from agents.policies import Action
from agents.search import Proposal
from design.code import code_hash
from design.script import noise
from design.script.operators import propose_edit

METRIC = "score"
KEEP = ("val_bpb", "test_bpb", "val_tokens", "test_tokens", "params", "steps", "training_seconds", "train_wall_s",
        "eval_s", "peak_rss_mb", "stopped_by_clock", "causal_max_diff", "causal_probes", "summary", "claimed_val_bpb",
        "stdout_tail", "stderr_tail", "isolation", "kind", "seed")


def node_key(code: str, seed: int) -> str:
    return f"{code}/s{seed}"


class ScriptTask:
    target = "design.script.evaluate:evaluate"
    metric = METRIC
    edit_proposer = staticmethod(propose_edit)  # a subclass with its own operator table swaps it

    def __init__(self, baseline: str, settings: dict[str, Any], gate_sigmas: float, journal_path,
                 operators: list[str] | None = None, max_seq_len: int | None = None):
        self.baseline = baseline
        self.baseline_code = code_hash(baseline)
        self.settings = settings  # per-run constants of every job (budget, device, eval, sandbox limits)
        self.gate_sigmas = gate_sigmas
        self.journal_path = journal_path
        self.operators = list(operators or [])
        self.ctx = {"max_seq_len": max_seq_len} if max_seq_len else {}
        self.sources: dict[str, str] = {self.baseline_code: baseline}  # code -> source
        self.sigma: float | None = None
        self.incumbent: dict[str, Any] | None = None  # {"code", "val_bpb"}
        self.items: dict[str, list[dict]] = {}  # phase agent -> its fixed proposals (baseline / rerun phases)
        self.taken: dict[str, int] = {}

    # ------------------------------------------------------------------ state

    def restore(self, journal: Journal) -> None:
        """Rebuild sources, sigma and the incumbent from a journal (resume, and each phase's start)."""
        for n in journal.nodes():
            if n.payload.get("code") and n.payload.get("source"):
                self.sources[n.payload["code"]] = n.payload["source"]
        calib = journal.meta("noise")
        if calib:
            self.sigma = calib["sigma"]
            self.incumbent = {"code": self.baseline_code, "val_bpb": calib["mean"]}
            done = [n for n in journal.nodes("done") if n.metrics.get("decision") == "keep"]
            if done:
                last = max(done, key=lambda n: (n.finished_at or 0.0, n.seq))
                self.incumbent = {"code": last.payload["code"], "val_bpb": last.metrics["val_bpb"]}

    def assign(self, agents: list[str], items: list[dict]) -> dict[str, int]:
        """Deal fixed proposals (baseline seeds, re-runs) round-robin to agents; returns how many each gets."""
        self.items = {a: items[i::len(agents)] for i, a in enumerate(agents)}
        self.taken = dict.fromkeys(agents, 0)
        return {a: len(v) for a, v in self.items.items()}

    # ------------------------------------------------------------------ proposals

    def propose(self, action: Action, rng: random.Random) -> Proposal:
        agent = action.context.get("agent", "agent-0")
        if self.items:  # a phase of fixed proposals: this agent's next one (each agent proposes in turn)
            mine = self.items.get(agent, [])
            i = self.taken.get(agent, 0)
            if i >= len(mine):
                return Proposal({}, None, "nothing left to run in this phase")
            self.taken[agent] = i + 1
            item = mine[i]
            return Proposal(self._payload(item["kind"], item["code"], item["seed"], item["idea"]),
                            node_key(item["code"], item["seed"]))
        return self._edit(action, rng)

    def _payload(self, kind: str, code: str, seed: int, idea: str, **extra) -> dict[str, Any]:
        return {"kind": kind, "code": code, "seed": seed, "source": self.sources[code], "idea": idea, **extra}

    def _edit(self, action: Action, rng: random.Random) -> Proposal:
        if self.incumbent is None:
            return Proposal({}, None, "no incumbent yet: the baseline runs have not finished")
        base = self.incumbent["code"]
        with Journal(self.journal_path) as j:  # state before this round: the same whichever agent asks first
            out = self.edit_proposer(self.sources[base], rng, self.operators, self.ctx,
                               avoid=lambda s: j.has_key(node_key(code_hash(s), 0)))
        if out is None:
            return Proposal({}, None, "no built-in edit of the incumbent is left that was not evaluated")
        source, op, description = out
        code = code_hash(source)
        self.sources.setdefault(code, source)
        payload = self._payload("candidate", code, 0, f"{action.operator}: {description}", parent=base,
                                edit={"operator": op, "description": description})
        return Proposal(payload, node_key(code, 0))

    # ------------------------------------------------------------------ evaluation

    def job_payload(self, node: Node) -> dict[str, Any]:
        # No paths: the worker finds the run from its job folder, so a replay elsewhere compares equal.
        p = node.payload
        return {"kind": p["kind"], "seed": p["seed"], "key": node.key, "source": p["source"], "settings": self.settings}

    def metrics(self, value: dict[str, Any]) -> dict[str, Any]:
        if "val_bpb" not in value:
            raise KeyError("the worker's result has no 'val_bpb'")
        m = {k: value[k] for k in KEEP if k in value}
        kind = value.get("kind")
        if kind == "baseline":
            m["decision"] = "baseline"
        elif kind == "rerun":
            m["decision"] = "rerun"
        elif self.incumbent is None or self.sigma is None:
            m["decision"] = "unjudged"
        else:
            d = noise.decide(value["val_bpb"], self.incumbent["val_bpb"], self.sigma, self.gate_sigmas)
            m.update(d, incumbent=self.incumbent["code"], incumbent_val_bpb=self.incumbent["val_bpb"])
            if d["decision"] == "keep":
                m[METRIC] = value["val_bpb"]
                code = str(value.get("key", "")).split("/")[0]
                self.incumbent = {"code": code, "val_bpb": value["val_bpb"]}
        return m
