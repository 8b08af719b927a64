"""`aira slurm pretrain`: a two-process DeepSpeed run on CPU through sbatch + srun on the local cluster
(slurm/local/) against the same run started locally by torchrun; the time-limit warning (SIGUSR1 to the
batch shell) checkpoints, requeues and resumes it; the rendered 2 x 8 GPU script, line by line; the code
snapshot; the rendezvous pretrain/distributed.py takes from srun's environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slurm import snapshot
from slurm.cli import main
from slurm.state import job_states
from tests.pretrain.launch import clean_env, launcher

ROOT = Path(__file__).resolve().parents[2]
TINY = "configs/pretrain/tiny.yaml"
# configs/pretrain/tiny.yaml made smaller; 200 steps (~5 s on 2 processes) leave time for the warning to land.
STEPS = 200
OVERRIDES = ["model.spec.pattern=[attn,mlp,attn,mlp]", "model.spec.d_model=32", "model.spec.primitives.mlp.hidden=64",
             "data.seq_len=32", "data.train_mb=0.5", "data.val_mb=0.05", "train.batch_size=8",
             "train.micro_batch_size=4", f"train.steps={STEPS}", "train.val_every=50", "train.val_tokens=2048",
             "train.ckpt_every=1000", "train.log_every=50", "log.progress=false"]


def _records(run_dir: Path, kind: str = "train") -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def _wait(what: str, ok, timeout_s: float, why=lambda: "") -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if ok():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{why()}")


def _events(run_dir: Path) -> list[dict]:
    path = run_dir / "slurm" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _log(run_dir: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-6000:] for p in (run_dir / "slurm" / "logs").glob("*.out"))


def _release(job: str, run: Path, why) -> None:
    """Start the requeued job now: SLURM holds one for about two minutes (BeginTime) before it may run again.

    The requeue event is written just before the script calls `scontrol requeue`, so the job may still be
    RUNNING (its first attempt) for a moment: wait for the second attempt's start, releasing the hold
    whenever the job is PENDING."""
    deadline = time.time() + 180
    while time.time() < deadline:
        if any(e.get("event") == "start" and e.get("restart") == 1 for e in _events(run)):
            return
        state = job_states([job])[job]
        if state.ended:
            raise AssertionError(f"the requeued job {job} ended ({state}) instead of starting again\n{why()}")
        if state.state == "PENDING":
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], capture_output=True, check=False)
        time.sleep(0.3)
    raise AssertionError(f"the requeued job {job} did not start again\n{why()}")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The same run started here by torchrun, 2 processes."""
    ref = tmp_path_factory.mktemp("slurm-pretrain-ref") / "local"
    local = subprocess.run([*launcher(2), "-m", "pretrain", "run", TINY, *OVERRIDES, f"run_dir={ref}"], cwd=ROOT,
                           env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600,
                           check=False)
    assert local.returncode == 0, local.stdout[-3000:]
    return ref


def _submit(run: Path, *extra: str) -> str:
    cwd = os.getcwd()
    os.chdir(ROOT)  # the user's view: relative config path, submitted from the project
    try:
        assert main(["pretrain", TINY, *OVERRIDES, f"run_dir={run}", "--tasks-per-node", "2", "--time", "10",
                     *extra]) == 0
    finally:
        os.chdir(cwd)
    return json.loads((run / "slurm" / "jobs.json").read_text())["jobs"][0]["id"]


@pytest.fixture(scope="module")
def runs(slurm_cluster, tmp_path_factory) -> dict:
    """`aira slurm pretrain` of the tiny run, 2 tasks on one node, left to finish."""
    run = tmp_path_factory.mktemp("slurm-pretrain") / "sbatch"
    job = _submit(run)
    _wait("the job to end", lambda: job_states([job])[job].ended, 420, lambda: _log(run))
    return {"run": run, "job": job, "state": job_states([job])[job]}


@pytest.fixture(scope="module")
def requeued(slurm_cluster, tmp_path_factory) -> dict:
    """The same submission warned of its time limit after its first step: checkpoint, exit 75, requeue, resume."""
    run = tmp_path_factory.mktemp("slurm-requeue") / "sbatch"
    job = _submit(run, "--signal-s", "60")
    log = lambda: _log(run)
    # The trainer installs its signal handler before step 1: once a metrics line exists, a warning is caught.
    _wait("the first training step", lambda: (run / "metrics.jsonl").is_file()
          and (run / "metrics.jsonl").read_text().strip(), 240, log)
    # What SLURM does at --signal=B:USR1@60: SIGUSR1 to the batch shell only.
    subprocess.run(["scancel", "--batch", "--signal=USR1", job], check=True)
    _wait("the requeue", lambda: any(e.get("requeue") is True for e in _events(run)), 120, log)
    _release(job, run, log)
    _wait("the job to end", lambda: job_states([job])[job].ended, 300, log)
    return {"run": run, "job": job, "state": job_states([job])[job]}


@pytest.mark.slurm
def test_sbatch_srun_run_matches_the_local_two_process_run(runs, reference):
    run, ref = runs["run"], reference
    assert runs["state"].state == "COMPLETED", (runs["state"], _log(run))
    assert [r["step"] for r in _records(run)] == list(range(1, STEPS + 1))
    # Same ranks, data, seed and gloo all-reduces.
    assert [r["loss"] for r in _records(run)] == [r["loss"] for r in _records(ref)]
    assert [r["val_loss"] for r in _records(run, "val")] == [r["val_loss"] for r in _records(ref, "val")]
    meta = json.loads((run / "checkpoints" / f"step-{STEPS:08d}" / "meta.json").read_text())
    assert meta["world_size"] == 2


# slow: on a loaded 2-core box the requeued attempt once ended FAILED (exit 1:0) without a line of output,
# in a full parallel suite run only; not reproduced alone. Run by `make test-slow` until that is understood.
@pytest.mark.slow
@pytest.mark.slurm
def test_time_limit_warning_checkpoints_requeues_and_resumes(requeued, reference):
    run, job = requeued["run"], requeued["job"]
    assert requeued["state"].state == "COMPLETED", (requeued["state"], _log(run))
    events = [(e["event"], e.get("restart"), e.get("status"), e.get("requeue")) for e in _events(run)]
    assert events == [("start", 0, None, None), ("exit", None, 75, True), ("start", 1, None, None),
                      ("exit", None, 0, False)], _log(run)
    log = _log(run)  # one log for both attempts (--open-mode=append)
    stopped = int(log.split("stopped by a signal at step ")[1].split(";")[0])
    assert 1 <= stopped < STEPS
    for line in ("SIGUSR1: time limit near, checkpointing", f"requeueing job {job}",
                 f"attempt 2 of job {job} on", "pretrain resume", f"resumed from step-{stopped:08d}"):
        assert line in log, line

    from slurm.status import status

    (row,) = status(run)
    assert (row.job_id, row.state, row.restarts, row.exit) == (job, "COMPLETED", 1, 0)
    # The interruption resumes exactly (pretrain's own tests): the same losses as the uninterrupted run.
    assert [r["loss"] for r in _records(run)] == [r["loss"] for r in _records(reference)]


@pytest.mark.slurm
def test_the_job_ran_from_its_code_snapshot(runs):
    run = runs["run"]
    code = next((run / "slurm" / "code").iterdir())
    assert f"code {code}," in _log(run)
    assert (code / "pretrain" / "train.py").read_bytes() == (ROOT / "pretrain" / "train.py").read_bytes()
    cfg = (run / "slurm" / "config.yaml").read_text()
    assert f"run_dir: {run}" in cfg and "steps: 200" in cfg


def test_rendered_multinode_gpu_script_line_by_line(tmp_path, capsys):
    run = tmp_path / "llama"
    assert main(["pretrain", str(ROOT / "configs/pretrain/llama3.2-1b.yaml"), f"run_dir={run}", "--nodes", "2",
                 "--gpus-per-node", "8", "--partition", "gpu", "--account", "lm", "--time", "2-00:00:00",
                 "--python", "/opt/aira/bin/python", "--setup", "module load cuda/12.4", "--dry-run"]) == 0
    script = capsys.readouterr().out
    code = snapshot.planned(run / "slurm" / "code")
    events = run / "slurm" / "events.jsonl"
    stamp = '\\"time\\": \\"$(date +%Y-%m-%dT%H:%M:%S)\\", \\"host\\": \\"$(hostname)\\"'
    expected = f"""#!/bin/bash
#SBATCH --job-name=pretrain-llama
#SBATCH --output={run}/slurm/logs/%x-%j.out
#SBATCH --partition=gpu
#SBATCH --account=lm
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --cpus-per-task=8
#SBATCH --gpus-per-node=8
#SBATCH --time=2880
#SBATCH --open-mode=append
#SBATCH --signal=B:USR1@300
#SBATCH --requeue

set -euo pipefail
export AIRA_CODE={code}
export PYTHONPATH={code}
export OMP_NUM_THREADS=8
module load cuda/12.4
RUN_DIR={run}
cd "$AIRA_CODE"  # the frozen code: later edits of the project do not reach this job
unset RANK WORLD_SIZE LOCAL_RANK  # from the submitting shell, if any: ranks come from srun
# Rendezvous: rank 0 runs on the first node; the port is fixed by the job id (also when requeued).
export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
export MASTER_PORT=$((20000 + SLURM_JOB_ID % 10000))
if [ -f "$RUN_DIR/checkpoints/latest" ]; then
  verb=(resume "$RUN_DIR")
else
  verb=(run {run}/slurm/config.yaml)
fi
echo "attempt $((${{SLURM_RESTART_COUNT:-0}} + 1)) of job $SLURM_JOB_ID on $SLURM_JOB_NODELIST: pretrain ${{verb[0]}}, code $AIRA_CODE, rendezvous $MASTER_ADDR:$MASTER_PORT"
echo "{{\\"job\\": \\"$SLURM_JOB_ID\\", \\"event\\": \\"start\\", {stamp}, \\"restart\\": ${{SLURM_RESTART_COUNT:-0}}}}" >> {events}
# SIGUSR1 before the time limit reaches this shell only (--signal=B:...): note it, hand it to srun,
# which passes it to every task; the trainer checkpoints at the end of its step and exits 75.
warned=0 step=""
trap 'warned=1; echo "$(date +%T) SIGUSR1: time limit near, checkpointing"; kill -USR1 "$step" 2>/dev/null || true' USR1
srun --nodes=2 --ntasks-per-node=8 --cpus-per-task=8 --gpus-per-node=8 --wait=120 --kill-on-bad-exit=0 /opt/aira/bin/python -u -m pretrain "${{verb[@]}}" &
step=$!
set +e
# A trap cuts `wait` short: wait again until srun has really ended.
while :; do wait "$step"; status=$?; kill -0 "$step" 2>/dev/null || break; done
set -e
if [ "$status" -eq 75 ] && [ "$warned" -eq 1 ]; then
  echo "{{\\"job\\": \\"$SLURM_JOB_ID\\", \\"event\\": \\"exit\\", {stamp}, \\"status\\": $status, \\"requeue\\": true}}" >> {events}
  echo "checkpointed before the time limit: requeueing job $SLURM_JOB_ID; the next attempt resumes"
  scontrol requeue "$SLURM_JOB_ID" && exit 0
fi
echo "{{\\"job\\": \\"$SLURM_JOB_ID\\", \\"event\\": \\"exit\\", {stamp}, \\"status\\": $status, \\"requeue\\": false}}" >> {events}
exit "$status"
"""
    for i, (got, want) in enumerate(zip(script.splitlines(), expected.splitlines(), strict=True)):
        assert got == want, f"line {i + 1}"
    assert not run.exists()  # a dry run writes nothing: no run dir, no snapshot, no script
    # The script is valid bash.
    assert subprocess.run(["bash", "-n"], input=script, text=True, check=False).returncode == 0


def test_a_batch_that_does_not_split_over_the_processes_is_refused_before_submitting(tmp_path, capsys):
    # llama3.2-1b: 256 sequences in micro-batches of 8; 5 nodes x 8 GPUs = 40 processes do not divide it.
    assert main(["pretrain", str(ROOT / "configs/pretrain/llama3.2-1b.yaml"), f"run_dir={tmp_path / 'r'}",
                 "--nodes", "5", "--gpus-per-node", "8", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "train.batch_size 256 does not split into micro-batches of 8 on 40 processes" in err


# ------------------------------------------------------------------------------------------ the snapshot

def _git_project(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "mod.py").write_text("VALUE = 1\n")
    (root / ".gitignore").write_text("runs/\n")
    (root / "runs").mkdir()
    (root / "runs" / "big.bin").write_bytes(b"0" * 100)
    git = ["git", "-C", str(root), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    (root / "pkg" / "new.py").write_text("NEW = 2\n")  # untracked, not ignored: part of what runs
    return root


def test_snapshot_freezes_the_code_and_a_later_edit_makes_a_new_one(tmp_path):
    root = _git_project(tmp_path / "project")
    assert snapshot.source_files(root) == [".gitignore", "pkg/__init__.py", "pkg/mod.py", "pkg/new.py"]
    first = snapshot.snapshot(tmp_path / "code", root)
    assert first == snapshot.planned(tmp_path / "code", root)
    assert snapshot.snapshot(tmp_path / "code", root) == first  # unchanged code: the same folder, reused
    (root / "pkg" / "mod.py").write_text("VALUE = 2\n")
    second = snapshot.snapshot(tmp_path / "code", root)
    assert second != first
    assert (first / "pkg" / "mod.py").read_text() == "VALUE = 1\n"  # what a running job imports is unchanged
    assert (second / "pkg" / "mod.py").read_text() == "VALUE = 2\n"
    assert not (first / "runs").exists()
    assert sorted(p.name for p in (tmp_path / "code").iterdir()) == sorted([first.name, second.name])


def test_a_job_imports_the_snapshot_not_the_installed_project(tmp_path):
    # The venv has the project installed editable (pointing at the work tree); the job's PYTHONPATH and
    # working directory must win over it.
    code = snapshot.snapshot(tmp_path / "code")
    r = subprocess.run([sys.executable, "-c", "import pretrain.train, slurm; print(pretrain.train.__file__)"],
                       cwd=code, env={**os.environ, "PYTHONPATH": str(code)}, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(code / "pretrain" / "train.py")


def test_config_paths_are_pinned_for_a_job_that_runs_in_the_snapshot(tmp_path):
    files = set(snapshot.source_files())
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "tokenizer.json").write_text("{}")
    pin = lambda v, cwd=tmp_path: snapshot.pin_path(v, cwd, files)
    assert pin("tok/tokenizer.json") == str(tmp_path / "tok" / "tokenizer.json")  # the user's file: absolute
    assert pin("configs/models/llama-proxy.yaml", ROOT) == "configs/models/llama-proxy.yaml"  # in the snapshot
    for word in ("tiny", "bytes", "hf:meta-llama/Llama-3.2-1B", "/abs/x.yaml", "no/such/file.json"):
        assert pin(word) == word


# ------------------------------------------------------------------------------------------ the rendezvous

@pytest.mark.parametrize("nodelist, first", [("vm", "vm"), ("gpu[03-04,7],cpu1", "gpu03"), ("node[1-2]", "node1"),
                                             ("a1,b2", "a1"), ("rack[2-3]-n[05-06]", "rack2-n05"),
                                             ("n[7,1-3]", "n7")])
def test_first_host_is_what_scontrol_lists_first(nodelist, first):
    # The expected values are `scontrol show hostnames NODELIST | head -n 1` (SLURM 22.05).
    from pretrain.distributed import first_host

    assert first_host(nodelist) == first


def _clear(monkeypatch, *names: str) -> None:
    """Unset names for this test and restore them after, also those setup_env writes meanwhile (delenv of
    an unset name records nothing: a RANK written by setup_env would leak into later tests' jobs)."""
    for k in names:
        monkeypatch.setenv(k, "")
        monkeypatch.delenv(k)


def test_srun_tasks_get_rank_and_rendezvous_from_slurm(monkeypatch):
    from pretrain.distributed import setup_env

    _clear(monkeypatch, "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    slurm = {"SLURM_STEP_ID": "0", "SLURM_PROCID": "11", "SLURM_NTASKS": "16", "SLURM_LOCALID": "3",
             "SLURM_STEP_NODELIST": "gpu[07-08]", "SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_JOB_ID": "4123456"}
    for k, v in slurm.items():
        monkeypatch.setenv(k, v)
    env = setup_env()
    assert (env.rank, env.world_size, env.local_rank) == (11, 16, 3)
    assert (os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"]) == ("gpu07", "23456")


def test_a_batch_shell_is_not_mistaken_for_rank_0_of_its_job(monkeypatch):
    # The batch script sees SLURM_NTASKS of the whole job but is one process: no SLURM_STEP_ID there.
    from pretrain.distributed import setup_env

    _clear(monkeypatch, "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_STEP_ID")
    for k, v in {"SLURM_PROCID": "0", "SLURM_NTASKS": "16", "SLURM_LOCALID": "0", "SLURM_JOB_ID": "7"}.items():
        monkeypatch.setenv(k, v)
    env = setup_env()
    assert (env.rank, env.world_size) == (0, 1)
