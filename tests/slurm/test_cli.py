"""`aira slurm`: the stage is listed, user mistakes end in one line saying what to change (exit 2), and
status / cancel read job files of other writers (slurm/executor.py) with only the keys they know."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slurm.cli import main, minutes

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs/pretrain/tiny.yaml")


def test_the_aira_command_lists_the_slurm_stage(capsys):
    from aira.cli import main as aira

    assert aira(["--help"]) == 0
    assert "slurm" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["pretrain", TINY, "--gpus-per-node", "8", "--tasks-per-node", "4"],
     "--tasks-per-node 4 with --gpus-per-node 8: the trainer runs one process per GPU"),
    (["pretrain", TINY, "--signal-s", "30"], "--signal-s 30: give the trainer at least 60 s to checkpoint"),
    (["pretrain", TINY, "--time", "1", "--signal-s", "120"],
     "--signal-s 120 is not shorter than the time limit (1 min)"),
    (["pretrain", TINY, "--nodes", "0"], "slurm.nodes must be >= 1, got 0"),
    (["pretrain", TINY, "--sbatch", "exclusive"], "slurm.extra holds sbatch options such as '--exclusive'"),
    (["pretrain", TINY, "train.zero_stage=7"], ("the pretrain config does not resolve: invalid pretrain config:\n"
                                                "  - train.zero_stage: must be 0, 1, 2 or 3, got 7")),
    (["sweep", "lra", "out", "--models", "a.yaml", "--groups", "listops,text"],
     "lra groups are single LRA tasks (one training run per element)"),
])
def test_user_mistakes_say_what_to_change(argv, message, capsys, tmp_path):
    assert main([*argv, "--dry-run"]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("text, mins", [("90", 90), ("04:00:00", 240), ("1-12:00:00", 2160), ("0:30", 30),
                                        ("00:10:30", 11)])
def test_time_limits_in_slurm_formats(text, mins):
    assert minutes(text) == mins


def test_a_time_limit_that_is_no_time_is_an_argument_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["pretrain", TINY, "--time", "2h", "--dry-run"])
    assert e.value.code == 2 and "give minutes (90) or [D-]HH:MM[:SS]" in capsys.readouterr().err


def test_status_and_cancel_of_a_folder_without_jobs_say_so(tmp_path, capsys):
    for verb in ("status", "cancel"):
        assert main([verb, str(tmp_path)]) == 2
        assert "no SLURM jobs recorded" in capsys.readouterr().err
    assert main(["gather", str(tmp_path)]) == 2
    assert "no sweep elements" in capsys.readouterr().err


def test_status_reads_other_writers_job_files_and_the_events(tmp_path, capsys):
    # Job ids no cluster knows: the state comes from the events the scripts left (or stays UNKNOWN).
    sd = tmp_path / "slurm"
    sd.mkdir()
    (sd / "executor.json").write_text(json.dumps({"jobs": [
        {"job_id": 91234561, "name": "eval", "array": "0-1%2", "other": "ignored"},
        {"name": "no id"}, "not a mapping"]}))
    (sd / "notes.json").write_text(json.dumps({"something": "else"}))  # no "jobs" list: not a job file
    (sd / "logs").mkdir()
    (sd / "events.jsonl").write_text(
        '{"job": "91234561_0", "event": "start", "restart": 0}\n'
        '{"job": "91234561_0", "event": "exit", "status": 0}\n'
        '{"job": "91234561_1", "event": "start", "restart": 0}\n'
        '{"job": "91234561_1", "event": "exit", "status": 75, "requeue": true}\n'
        '{"job": "91234561_1", "event": "start", "restart": 1}\n'
        '{"job": "91234561_1", "event": "exit", "status": 1}\n'
        '{"job": "91234561_1", "event": "exi\n')  # cut short by a kill: skipped
    assert main(["status", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    lines = {line.split()[0]: line for line in text.splitlines() if line.startswith("91234561_")}
    # job, name, kind, state, restarts, exit, reason
    assert lines["91234561_0"].split()[:6] == ["91234561_0", "eval", "-", "COMPLETED", "0", "0"]
    assert lines["91234561_1"].split()[:6] == ["91234561_1", "eval", "-", "FAILED", "1", "1"]
    assert "from events: exit 1 (SLURM no longer knows the job)" in lines["91234561_1"]
    assert "(recorded in executor.json)" in text
    assert "--- 91234561_1 eval: FAILED, from events: exit 1" in text  # the failed one's log is looked for
    assert f"(no log at {tmp_path / 'slurm' / 'logs'}" not in text  # no log_dir recorded: none is guessed
    assert main(["cancel", str(tmp_path)]) == 0
    assert "nothing to cancel" in capsys.readouterr().out


@pytest.mark.slurm
def test_a_run_dir_still_being_trained_is_not_submitted_twice(slurm_cluster, tmp_path, capsys):
    from slurm.record import Job, record
    from slurm.resources import SlurmResources
    from slurm.sbatch import BatchJob, cancel, submit

    run = tmp_path / "run"
    job = submit(BatchJob("sleeper", SlurmResources(), ["sleep 120"], tmp_path / "logs").write(tmp_path / "s.sh"))
    record(run, Job(id=job, name="pretrain-run", kind="pretrain"))
    try:
        assert main(["pretrain", TINY, f"run_dir={run}"]) == 2
        assert f"{run} is being trained by job {job} (" in capsys.readouterr().err
    finally:
        cancel([job])
    assert not (run / "slurm" / "pretrain.sh").exists()  # refused before anything was written
