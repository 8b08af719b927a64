"""An adapter run over a user's checkout on disk: set-up, the phases, and the git view kept current.

RUN_DIR/config.yaml          the resolved config (task: autoresearch; `commit` and `name` filled in)
RUN_DIR/journal.db           every run of a train.py: source, run index, kind, metrics, decision (the truth)
RUN_DIR/autoresearch.json    what workers read: locked hashes, sandbox root, cache, readable paths
RUN_DIR/base/                the tree of the starting commit, from which every candidate's folder is copied
RUN_DIR/jobs/<id>/run.log    each run's output (its tail), beside job.json and result.json
RUN_DIR/results.tsv          autoresearch's log in its original format, rewritten as results come in
RUN_DIR/prepare.log          the output of the one trusted prepare_command, when the cache was missing
CHECKOUT: refs/heads/autoresearch/<name>   one commit per kept change (view.py), moved as keeps arrive

Phases (design/script's ScriptRun, one agents.search.Search each over the same journal, so resume and
replay work as in part 1): calibrate (noise.baseline_runs runs of the starting train.py: sigma) and
search (search.max_evals candidates). No re-run phase: a checkout defines one validation split and no
hidden test split to rank finalists on.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from agents.journal import Journal, Node
from aira.config import ConfigError, load_config, read_yaml
from aira.errors import UserError
from design.autoresearch import checkout, gitops, results_tsv, view
from design.autoresearch.config import AutoresearchConfig
from design.autoresearch.evaluate import META
from design.autoresearch.task import AutoresearchTask
from design.script import noise
from design.script.run import ScriptRun, make_sandbox_root, sandbox_root
from design.script.task import node_key

CONFIG_FILE = "config.yaml"


def is_autoresearch_run(path: str | Path | None) -> bool:
    """Whether `path` is a run directory (or config file) of this adapter (`task: autoresearch`)."""
    if path is None:
        return False
    p = Path(path)
    p = p / CONFIG_FILE if p.is_dir() else p
    return p.is_file() and str(read_yaml(p).get("task", "")) == "autoresearch"


def load(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> AutoresearchConfig:
    return load_config(AutoresearchConfig, path, overrides).check()


def load_run_config(run_dir: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> AutoresearchConfig:
    """The config a run was started with, plus overrides of its search budgets (search.*) only."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise ConfigError(f"{run_dir} is not an autoresearch run directory (no {CONFIG_FILE})")
    bad = [o for o in overrides if not o.startswith("search.")]
    if bad:
        raise ConfigError(f"a resumed run keeps its checkout, command and budget (or its results would not compare); "
                          f"only search.* budgets can change, not {', '.join(bad)}")
    cfg = load(run_dir / CONFIG_FILE, overrides)
    cfg.run_dir = str(run_dir)
    return cfg


def new_run_dir(cfg: AutoresearchConfig) -> Path:
    if not cfg.name:
        cfg.name = time.strftime("%Y%m%d-%H%M%S")
    if cfg.run_dir:
        run_dir = Path(cfg.run_dir)
        if (run_dir / "journal.db").exists():
            raise ConfigError(f"{run_dir} already holds a run; continue it with `aira design autoresearch {run_dir}` "
                              "or choose another run_dir")
        return run_dir
    return Path(cfg.out_dir) / f"autoresearch-{cfg.name}"


# ---------------------------------------------------------------------------------------------- set-up


def resolve_argv(command: str, env: dict[str, str], key: str) -> list[str]:
    """The command's words with its program made absolute (the sandbox's PATH is not the user's)."""
    argv = shlex.split(command)
    if not argv:
        raise ConfigError(f"{key} is empty")
    if "/" not in argv[0]:
        found = shutil.which(argv[0], path=env.get("PATH", os.environ.get("PATH")))
        if found is None:
            raise ConfigError(f"{key}: {argv[0]!r} is not on PATH; install it or give another {key}=...")
        argv[0] = found
    return argv


def cache_path(cfg: AutoresearchConfig, repo: Path) -> Path:
    p = Path(cfg.cache_dir).expanduser()
    return (p if p.is_absolute() else repo / p).absolute()


def ensure_cache(cfg: AutoresearchConfig, repo: Path, cache: Path, env: dict[str, str], run_dir: Path) -> bool:
    """Run prepare_command once, trusted (the user's own prepare.py, network on, not sandboxed), when the
    cache is missing or empty; True when it ran."""
    if cache.is_dir() and any(cache.iterdir()):
        return False
    argv = resolve_argv(cfg.prepare_command, env, "prepare_command")
    log = run_dir / "prepare.log"
    print(f"the cache {cache} is missing: running `{cfg.prepare_command}` in {repo} once (log: {log})", flush=True)
    with open(log, "wb") as f:
        try:
            code = subprocess.run(argv, cwd=repo, env={**os.environ, **env}, stdout=f, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=cfg.prepare_timeout_s, check=False).returncode
        except subprocess.TimeoutExpired:
            code = f"a timeout after {cfg.prepare_timeout_s:g} s"
    tail = log.read_text(errors="replace")[-2000:]
    if code != 0:
        raise UserError(f"`{cfg.prepare_command}` failed with {code} in {repo}; fix it and start again\n{tail}")
    if not (cache.is_dir() and any(cache.iterdir())):
        raise UserError(f"`{cfg.prepare_command}` succeeded but {cache} is still empty: set cache_dir (and cache_env "
                        "when prepare.py reads its location from a variable) to where prepare.py writes")
    return True


def candidate_env(cfg: AutoresearchConfig, argv: list[str], repo: Path, cache: Path) -> dict[str, str]:
    """What candidates' commands get on top of the sandbox's clean environment."""
    env = dict(cfg.env)
    if cfg.cache_env:
        env[cfg.cache_env] = str(cache)
    if Path(argv[0]).name == "uv":  # the copy has no .venv: use the checkout's, never install, never fetch
        if (repo / ".venv").is_dir():
            env.setdefault("UV_PROJECT_ENVIRONMENT", str(repo / ".venv"))
        env.setdefault("UV_NO_SYNC", "1")
        if not cfg.network:
            env.setdefault("UV_OFFLINE", "1")
    return env


def home_link(cfg: AutoresearchConfig, cache: Path) -> str | None:
    """Where, under the sandbox's HOME (the run's folder), the cache must appear: for a checkout that finds it
    as ~/<this> (autoresearch: ~/.cache/autoresearch) and is told nothing else."""
    if cfg.cache_env:
        return None
    try:
        return str(cache.relative_to(Path.home()))
    except ValueError:
        return None


def settings(cfg: AutoresearchConfig, argv: list[str], env: dict[str, str]) -> dict:
    """Per-run constants of every job (no paths of RUN_DIR: a replay elsewhere compares equal)."""
    return {"argv": argv, "env": env, "budget_s": cfg.budget_s, "overhead_s": cfg.overhead_s, "device": cfg.device,
            "threads": cfg.threads, "network": cfg.network, "trusted_eval": cfg.trusted_eval,
            "eval_batch_size": cfg.eval_batch_size, "eval_timeout_s": cfg.eval_timeout_s,
            "max_model_mb": cfg.max_model_mb, "max_log_mb": cfg.max_log_mb, "sandbox": dict(cfg.sandbox)}


# ---------------------------------------------------------------------------------------------- the run


class AutoresearchRun(ScriptRun):
    """design/script's phases over a checkout: calibrate, search; results.tsv and the branch kept current."""

    def __init__(self, cfg: AutoresearchConfig, run_dir: Path, task: AutoresearchTask, repo: Path, commit: str,
                 executor=None, on_event: Callable[[str, Node], None] | None = None, git_view: bool = True):
        self.user_event = on_event or (lambda kind, node: None)
        super().__init__(cfg, run_dir, task, executor, self._event)
        self.repo, self.commit, self.git_view = repo, commit, git_view
        self.branch = f"autoresearch/{cfg.name}"
        self.committer = gitops.Committer(repo, commit, cfg.editable) if git_view else None

    def run(self) -> Journal:
        if self._calibrate():
            self._search()
        self.finish()
        return self.journal

    def _event(self, kind: str, node: Node) -> None:
        self.user_event(kind, node)
        if kind in ("done", "failed"):
            self.sync()

    def _calibrate(self) -> bool:
        """The baseline runs; True once sigma is known (design/script's, without a hidden test split, and with
        one run allowed when the gate is 0)."""
        if self.journal.meta("noise"):
            return True
        k, code = self.cfg.noise.baseline_runs, self.task.baseline_code
        todo = [{"kind": "baseline", "code": code, "seed": i, "idea": f"baseline, run {i}"}
                for i in range(k) if not self.journal.has_key(node_key(code, i))]
        if todo or self.journal.unfinished():
            self._phase(todo)
        runs = self._nodes("baseline")
        if len(runs) < k:
            return False  # stopped early: resume continues
        done = [n for n in runs if n.status == "done"]
        if len(done) < min(k, 2):
            reasons = "; ".join(sorted({(n.error.strip().splitlines() or ["?"])[0][:300] for n in runs if n.error}))
            raise UserError(f"the checkout's own train.py failed {len(runs) - len(done)} of {k} baseline runs, so "
                            f"there is nothing to judge candidates against: {reasons} (run.log of each is in "
                            f"{self.run_dir}/jobs/<node id>/)")
        vals = [n.metrics["val_bpb"] for n in done]
        sigma = noise.sigma(vals) if len(vals) >= 2 else 0.0
        calib = {"sigma": sigma, "mean": sum(vals) / len(vals), "values": vals, "n": len(vals),
                 "gate": self.cfg.noise.gate_sigmas * sigma, "failed": len(runs) - len(done)}
        for n in done:  # the incumbent chain starts at the baseline's mean
            self.journal.update(n.id, metrics={**n.metrics, "score": calib["mean"]})
        self.journal.set_meta("noise", calib)
        self.task.restore(self.journal)
        return True

    def sync(self) -> view.View | None:
        """results.tsv and the branch from the journal as it is now (no-op in a replay)."""
        if not self.git_view:
            return None
        v = view.build(self.journal, self.committer, self.commit, self.cfg.name)
        results_tsv.write([row for _, row in v.rows], self.run_dir / "results.tsv")
        state = self.journal.meta("git") or {}
        if state.get("tip") != v.tip:
            gitops.move_branch(self.repo, self.branch, v.tip, state.get("tip"),
                               f"aira design autoresearch {self.cfg.name}: {len(v.rows)} runs")
        self.journal.set_meta("git", {"repo": str(self.repo), "branch": self.branch, "base": self.commit, "tip": v.tip,
                                      "commits": {n.id: row.commit for n, row in v.rows}})
        return v

    def finish(self) -> None:
        self.sync()
        inc = self.task.incumbent
        if inc:
            (self.run_dir / f"best_{self.cfg.editable}").write_text(self.task.sources.get(inc["code"], ""))


def open_run(cfg: AutoresearchConfig, run_dir: Path, on_event: Callable[[str, Node], None] | None = None,
             executor=None, git_view: bool = True) -> AutoresearchRun:
    """The coordinator over RUN_DIR: the checkout read and its starting commit copied, the config saved
    (so the run can be resumed), the cache prepared if missing, the branch made (git_view: False in a replay)."""
    from aira.config import make_run_dir, save_config, to_dict

    cfg.check()
    if not cfg.name:
        cfg.name = time.strftime("%Y%m%d-%H%M%S")
    repo = gitops.toplevel(Path(cfg.checkout).expanduser())
    if cfg.commit and repo is not None:  # resume / replay: the recorded commit, whatever HEAD is now
        commit = gitops.rev_parse(repo, cfg.commit)
        if commit is None:
            raise UserError(f"the run started from commit {cfg.commit[:7]}, which {repo} no longer has")
    else:
        co = checkout.open_checkout(cfg.checkout, cfg.editable)
        repo, commit = co.path, co.commit
        cfg.commit = commit
    cfg.checkout = str(repo)
    branch = f"autoresearch/{cfg.name}"
    gitops.check_branch_name(repo, branch)
    make_run_dir(run_dir).chmod(0o700)
    journal = Journal(run_dir / "journal.db")
    if git_view and journal.meta("git") is None and gitops.ref(repo, f"refs/heads/{branch}") is not None:
        raise UserError(f"branch {branch} already exists in {repo}: each run gets a fresh branch (program.md); "
                        "choose another name=...")
    save_config(cfg, run_dir / CONFIG_FILE)

    base = run_dir / "base"
    files = gitops.tracked_files(repo, commit)
    if not base.is_dir():
        tmp = run_dir / ".base.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        checkout.extract(repo, commit, tmp)
        tmp.rename(base)
    cache = cache_path(cfg, repo)
    base_env = dict(cfg.env, **({cfg.cache_env: str(cache)} if cfg.cache_env else {}))
    ensure_cache(cfg, repo, cache, base_env, run_dir)
    argv = resolve_argv(cfg.command, {**os.environ, **cfg.env}, "command")
    root = make_sandbox_root(sandbox_root(cfg, run_dir))
    locked = [f for f in files if f != cfg.editable]
    meta = {"editable": cfg.editable, "locked": checkout.snapshot(base, locked), "sandbox_root": str(root),
            "cache_dir": str(cache), "home_link": home_link(cfg, cache),
            "readable": [str(cache)] + [str((repo / Path(p).expanduser()).absolute()) for p in cfg.readable]}
    recorded = journal.meta("checkout")
    if recorded and recorded["locked"] != meta["locked"]:
        raise UserError(f"{base} no longer matches commit {commit[:7]} as hashed when the run started: "
                        "start a new run")
    (run_dir / META).write_text(json.dumps(meta, indent=1))
    source = (base / cfg.editable).read_text()
    task = AutoresearchTask(source, settings(cfg, argv, candidate_env(cfg, argv, repo, cache)), cfg.noise.gate_sigmas,
                            run_dir / "journal.db", cfg.operators or None)
    run = AutoresearchRun(cfg, run_dir, task, repo, commit, executor, on_event, git_view)
    run.journal.set_meta("config", to_dict(cfg))
    run.journal.set_meta("checkout", {"repo": str(repo), "commit": commit, "files": files, "locked": meta["locked"]})
    journal.close()
    if git_view and run.journal.meta("git") is None:
        gitops.move_branch(repo, branch, commit, None, f"aira design autoresearch {cfg.name}: start at {commit[:7]}")
        run.journal.set_meta("git", {"repo": str(repo), "branch": branch, "base": commit, "tip": commit, "commits": {}})
    task.restore(run.journal)
    return run
