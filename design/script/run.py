"""A training-script run on disk, and its three phases: calibrate, search, re-run.

RUN_DIR/config.yaml      the full resolved config (task: script), read back by resume / replay
RUN_DIR/journal.db       every run of a train.py: source, seed, kind, metrics (test_* hidden), decision
RUN_DIR/hidden/          the scored splits' tokens and the staged files' hashes (evaluator only)
RUN_DIR/jobs/<id>/       each evaluation's job.json, result.json, stderr.log
RUN_DIR/results.tsv      autoresearch's log: commit (code hash), val_bpb, memory_gb, status, description
RUN_DIR/best_train.py    the incumbent at the end
SANDBOX_ROOT             the training split the runs read, and their working folders (see `sandbox_root`)

Phases, each one agents.search.Search over the same journal (so resume and replay work as in part 1):

    calibrate  the starting train.py on seeds 0..k-1 (noise.baseline_runs): sigma, the baseline's mean
    search     agents edit the incumbent (search.max_evals candidates, search.time_limit_s); each result is
               kept only when it beats the incumbent by more than noise.gate_sigmas x sigma
    rerun      the best rerun.top candidates on rerun.seeds more seeds; the final ranking (report, leaderboard
               --test) is the mean hidden-test bpb over all runs of each script
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from agents.journal import Journal, Node
from agents.search import Search
from aira.config import ConfigError, load_config, read_yaml
from aira.errors import UserError
from design.script import noise
from design.script.config import ScriptConfig
from design.script.task import ScriptTask, node_key

CONFIG_FILE = "config.yaml"
BASELINE = Path(__file__).with_name("baseline_train.py")


def is_script_config(path: str | Path | None) -> bool:
    """Whether a design config file (or a run directory's config.yaml) is for this task (`task: script`)."""
    if path is None:
        return False
    p = Path(path)
    if p.is_dir():
        p = p / CONFIG_FILE
    if not p.is_file():
        return False
    data = read_yaml(p)
    return str(data.get("task", "")) == "script"


def load(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> ScriptConfig:
    return load_config(ScriptConfig, path, overrides).check()


def load_run_config(run_dir: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ScriptConfig:
    """The config a run was started with, plus overrides of its search budgets (search.*) only."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise ConfigError(f"{run_dir} is not a design run directory (no {CONFIG_FILE})")
    bad = [o for o in overrides if not o.startswith("search.")]
    if bad:
        raise ConfigError(f"a resumed run keeps its task, budget and data (or its results would not compare); only "
                          f"search.* budgets can change, not {', '.join(bad)}")
    cfg = load(run_dir / CONFIG_FILE, overrides)
    cfg.run_dir = str(run_dir)
    return cfg


def new_run_dir(cfg: ScriptConfig) -> Path:
    if cfg.run_dir:
        run_dir = Path(cfg.run_dir)
        if (run_dir / "journal.db").exists():
            raise ConfigError(f"{run_dir} already holds a design run; continue it with `aira design resume "
                              f"{run_dir}` or choose another run_dir")
        return run_dir
    return Path(cfg.out_dir) / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def baseline_source(cfg: ScriptConfig) -> str:
    """The starting train.py: the built-in one (or the file named by `baseline`) with baseline_overrides applied."""
    from design.script.operators import apply_overrides

    path = BASELINE if cfg.baseline == "builtin" else Path(cfg.baseline)
    if not path.is_file():
        raise ConfigError(f"baseline: {path} does not exist (give `builtin` or a train.py path)")
    return apply_overrides(path.read_text(), dict(cfg.baseline_overrides))


def _reachable(path: Path, uid: int) -> bool:
    for d in [path, *path.parents]:
        if d.exists():
            st = os.stat(d)
            if not (st.st_mode & stat.S_IXOTH or st.st_uid == uid):
                return False
    return True


def sandbox_root(cfg: ScriptConfig, run_dir: Path) -> Path:
    """Where runs read the training split and work: `sandbox_dir`, else beside RUN_DIR's parent, else $TMPDIR.

    Not under /tmp when it can be helped: the sandbox gives a run a private /tmp only when its working
    folder is not under it, and a shared /tmp is a place one run (an evaluation, which sees the scored
    splits' windows) could leave text for a later run to train on. Beside RUN_DIR works when every
    folder above it is searchable by the sandbox's user; otherwise $TMPDIR, as part 1 does (recorded as
    `shared_tmp` in the run's data info and the report)."""
    from agents.sandbox import SandboxLimits

    tag = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:10]
    if cfg.sandbox_dir:
        return Path(cfg.sandbox_dir) / f"{run_dir.name}-{tag}"
    beside = run_dir.resolve().parent / ".aira-sandbox"
    if _reachable(beside.parent, int(cfg.sandbox.get("uid", SandboxLimits.uid))):
        return beside / f"{run_dir.name}-{tag}"
    return Path(tempfile.gettempdir()) / "aira-sandbox" / f"{run_dir.name}-{tag}"


def make_sandbox_root(path: Path) -> Path:
    """0711 folders (traversable, not listable) down to work/, where runs get unguessable folder names."""
    for d in (path.parent, path, path / "work"):
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o711)
    return path


def settings(cfg: ScriptConfig) -> dict:
    threads = cfg.threads or max(1, (os.cpu_count() or 1) // cfg.search.n_workers)
    return {"budget_s": cfg.budget_s, "overhead_s": cfg.overhead_s, "device": cfg.device, "threads": threads,
            "eval": dataclasses.asdict(cfg.eval), "sandbox": dict(cfg.sandbox)}


class ScriptRun:
    """The coordinator of one training-script run: `run()` goes through the phases left to do."""

    def __init__(self, cfg: ScriptConfig, run_dir: Path, task: ScriptTask, executor=None,
                 on_event: Callable[[str, Node], None] | None = None):
        self.cfg, self.run_dir, self.task = cfg, run_dir, task
        self.executor, self.on_event = executor, on_event
        self.journal = Journal(run_dir / "journal.db")

    # ------------------------------------------------------------------ phases

    def run(self) -> Journal:
        if not self._calibrate():
            return self.journal
        self._search()  # search.time_limit_s ends this phase; the re-runs still happen (the final ranking)
        self._rerun()
        self.finish()
        return self.journal

    def _nodes(self, kind: str, status: tuple[str, ...] = ("done", "failed")) -> list[Node]:
        return [n for n in self.journal.nodes(status) if n.payload.get("kind") == kind]

    def _evaluated(self) -> int:
        return len(self.journal.nodes(("done", "failed")))

    def _phase(self, items: list[dict] | None, budget: int | None = None) -> None:
        """A Search over fixed `items` (baseline seeds, re-runs), or over free proposals up to `budget` more
        evaluations (the search phase). Unfinished nodes of a killed run are finished first, in either."""
        s = self.cfg.search
        evaluated, unfinished = self._evaluated(), len(self.journal.unfinished())
        if items is not None:
            n = max(1, min(s.n_workers, len(items)))
            cfg = dataclasses.replace(s, n_agents=n, max_evals=evaluated + unfinished + len(items), time_limit_s=None,
                                      max_evals_per_agent=None, eval_seconds_per_agent=None)
        else:
            cfg = dataclasses.replace(s, max_evals=evaluated + budget)
        search = Search(self.run_dir, self.task, cfg, executor=self.executor, on_event=self.on_event)
        if items is not None:
            counts = self.task.assign(search.agents, items)
            for a, k in counts.items():  # each agent proposes exactly its share, then stops
                had = sum(1 for nd in self.journal.nodes() if nd.agent_id == a)
                search.policies[a].max_proposals = had + k
        try:
            search.run()
        finally:
            self.task.items = {}

    def _calibrate(self) -> bool:
        """Run the baseline k times; True once sigma is known."""
        if self.journal.meta("noise"):
            return True
        k, code = self.cfg.noise.baseline_runs, self.task.baseline_code
        todo = [{"kind": "baseline", "code": code, "seed": i, "idea": f"baseline, seed {i}"}
                for i in range(k) if not self.journal.has_key(node_key(code, i))]
        if todo or self.journal.unfinished():
            self._phase(todo)
        runs = self._nodes("baseline")
        if len(runs) < k:
            return False  # stopped early (Ctrl-C is raised, a replay ends here): resume continues
        done = [n for n in runs if n.status == "done"]
        if len(done) < 2:
            reasons = "; ".join(sorted({(n.error.strip().splitlines() or ["?"])[0][:200] for n in runs if n.error}))
            raise UserError(f"the starting train.py failed {len(runs) - len(done)} of {k} baseline runs, so there is "
                            f"no noise estimate to judge candidates by: {reasons}")
        vals = [n.metrics["val_bpb"] for n in done]
        tests = [n.metrics["test_bpb"] for n in done]
        calib = {"sigma": noise.sigma(vals), "mean": sum(vals) / len(vals), "values": vals, "n": len(vals),
                 "test_sigma": noise.sigma(tests), "test_mean": sum(tests) / len(tests),
                 "gate": self.cfg.noise.gate_sigmas * noise.sigma(vals), "failed": len(runs) - len(done)}
        for n in done:  # the incumbent chain starts at the baseline's mean
            self.journal.update(n.id, metrics={**n.metrics, "score": calib["mean"]})
        self.journal.set_meta("noise", calib)
        self.task.restore(self.journal)
        return True

    def _search(self) -> None:
        done = len(self._nodes("candidate"))
        left = (self.cfg.search.max_evals or 0) - done
        if left <= 0 and not self.journal.unfinished():
            return
        self.task.restore(self.journal)
        self._phase(None, budget=max(0, left))

    def rerun_plan(self) -> list[dict]:
        """The finalists (kept candidates first, then others below the baseline's mean, by val_bpb) x extra seeds."""
        plan = self.journal.meta("rerun_plan")
        if plan is not None:
            return plan
        calib = self.journal.meta("noise") or {}
        done = [n for n in self._nodes("candidate", ("done",)) if "val_bpb" in n.metrics]
        kept = sorted((n for n in done if n.metrics.get("decision") == "keep"), key=lambda n: n.metrics["val_bpb"])
        near = sorted((n for n in done if n.metrics.get("decision") != "keep"
                       and n.metrics["val_bpb"] < calib.get("mean", float("inf"))), key=lambda n: n.metrics["val_bpb"])
        codes: list[str] = []
        for n in kept + near:
            if n.payload["code"] not in codes and len(codes) < self.cfg.rerun.top:
                codes.append(n.payload["code"])
        plan = [{"kind": "rerun", "code": c, "seed": s, "idea": f"re-run, seed {s}"}
                for c in codes for s in range(1, self.cfg.rerun.seeds + 1)]
        self.journal.set_meta("rerun_plan", plan)
        return plan

    def _rerun(self) -> None:
        if self.journal.meta("finished"):
            return
        todo = [p for p in self.rerun_plan() if not self.journal.has_key(node_key(p["code"], p["seed"]))]
        if todo or self.journal.unfinished():
            self.task.restore(self.journal)
            self._phase(todo)
        if all(self.journal.has_key(node_key(p["code"], p["seed"])) for p in self.rerun_plan()) \
                and not self.journal.unfinished():
            self.journal.set_meta("finished", True)

    def finish(self) -> None:
        """results.tsv and best_train.py (written whenever the run stops, so a stopped run has them too)."""
        from design.script.report import write_results_tsv

        write_results_tsv(self.journal, self.run_dir / "results.tsv")
        inc = self.task.incumbent
        if inc:
            (self.run_dir / "best_train.py").write_text(self.task.sources.get(inc["code"], ""))


def open_run(cfg: ScriptConfig, run_dir: Path, on_event: Callable[[str, Node], None] | None = None,
             executor=None) -> ScriptRun:
    """The coordinator over RUN_DIR: config first (so the run can be resumed), then the staged data."""
    from aira.config import make_run_dir, save_config, to_dict
    from design.script.prepare import stage

    cfg.check()
    make_run_dir(run_dir).chmod(0o700)
    save_config(cfg, run_dir / CONFIG_FILE)
    root = make_sandbox_root(sandbox_root(cfg, run_dir))
    info = stage(cfg.data, run_dir, root)
    source = baseline_source(cfg)
    task = ScriptTask(source, settings(cfg), cfg.noise.gate_sigmas, run_dir / "journal.db", cfg.operators or None,
                      cfg.data.seq_len)
    run = ScriptRun(cfg, run_dir, task, executor, on_event)
    run.journal.set_meta("config", to_dict(cfg))
    public = {k: v for k, v in info.items() if k not in ("locked",)}
    run.journal.set_meta("data", {**public, "shared_tmp": str(root).startswith(tempfile.gettempdir().rstrip("/") + "/")})
    task.restore(run.journal)
    return run


def open_journal(run_dir: str | Path) -> Journal:
    path = Path(run_dir) / "journal.db"
    if not path.is_file():
        raise ConfigError(f"{run_dir} has no journal.db: not a design run directory, or a run that never started")
    return Journal(path)


def summary_of(journal: Journal) -> dict:
    """What the commands print: counts by decision, sigma, the incumbent."""
    nodes = journal.nodes()
    counts = {"keep": 0, "discard": 0, "crash": 0, "baseline": 0, "rerun": 0, "invalid": 0}
    for n in nodes:
        if n.status == "invalid":
            counts["invalid"] += 1
        elif n.status == "failed":
            counts["crash"] += 1
        elif n.status == "done":
            counts[n.metrics.get("decision", "discard") if n.metrics.get("decision") in counts else "discard"] += 1
    return {"counts": counts, "noise": journal.meta("noise"), "rerun_plan": journal.meta("rerun_plan")}

