"""`aira slurm sweep` + `gather`: lm-eval and LRA as job arrays on the local cluster (slurm/local/), one
(model, task group) per element, gathered into one table; failed and missing elements listed with reasons.

The work is real and small: lm-eval on a tiny pretrain checkpoint with local tasks (no hub), and an LRA
ListOps run of a few steps."""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import pytest

from slurm.cli import main
from slurm.state import job_states

ROOT = Path(__file__).resolve().parents[2]
LRA_ARGS = ["--config", "configs/lra/listops-tiny.yaml", "train.max_steps=6", "train.val_every=3",
            "data.num_train=64", "data.num_val=32", "data.num_test=32", "train.progress_bar=false"]


def _tasks(root: Path) -> Path:
    """Two local lm-eval tasks (multiple choice, log-likelihood) on the sentences the checkpoint saw."""
    root.mkdir(parents=True)
    mc = [{"question": f"the {a} is", "choices": ["red", "big", "qzx"], "label": i % 2}
          for i, a in enumerate(["cat", "dog", "cow", "fish"])]
    ll = [{"text": s} for s in ["the cat is red.", "the dog is big.", "the cow is small."]]
    bodies = {
        "toy_mc": (mc, ('output_type: multiple_choice\ndoc_to_text: "{{question}}"\ndoc_to_target: label\n'
                        "doc_to_choice: choices\nmetric_list: [{metric: acc}, {metric: acc_norm}]")),
        "toy_ll": (ll, ("output_type: loglikelihood\ndoc_to_text: \"{{text.split(' ')[:-1]|join(' ')}}\"\n"
                        "doc_to_target: \"{{' '+text.split(' ')[-1]}}\"\nmetric_list: [{metric: acc}]")),
    }
    for name, (rows, body) in bodies.items():
        (root / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        (root / f"{name}.yaml").write_text(f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
                                           f"    test: {root / f'{name}.jsonl'}\n  cache_dir: {root / 'hf-cache'}\n"
                                           f"test_split: test\n{body}\n")
    return root


def _checkpoint(run_dir: Path) -> Path:
    from pretrain.tokenizer import ByteTokenizer
    from tests.pretrain.tiny_runs import llama_spec, make_run, train

    tok = ByteTokenizer()
    docs = [list(s.encode()) for s in ["the cat is red.", "the dog is big.", "the cow is small."]]
    return make_run(run_dir, train(llama_spec(256, 32), docs, tok.eos_id, 32, steps=30), tok, "bytes", 32)


def _wait_ended(ids: list[str], timeout_s: float = 300) -> dict:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        states = job_states(ids)
        if all(s.ended for s in states.values()):
            return states
        time.sleep(0.5)
    raise AssertionError(f"jobs did not end: {job_states(ids)}")


def _ids(out: Path) -> dict[str, str]:
    return {j["kind"]: j["id"] for j in json.loads((out / "slurm" / "jobs.json").read_text())["jobs"]}


@pytest.fixture(scope="module")
def sweeps(slurm_cluster, tmp_path_factory) -> dict[str, Path]:
    """An lm sweep (a checkpoint and a path that is none, x two task groups) and an LRA sweep (one spec x
    ListOps), submitted together; returned once both gather jobs have ended."""
    base = tmp_path_factory.mktemp("sweeps")
    ckpt, tasks = _checkpoint(base / "ckpt-a"), _tasks(base / "tasks")
    lm, lra = base / "lm", base / "lra"
    cwd = os.getcwd()
    os.chdir(ROOT)  # relative paths as a user in the project types them (configs/lra/...)
    try:
        assert main(["sweep", "lm", str(lm), "--models", str(ckpt), str(base / "no-such-ckpt"), "--groups", "toy_mc",
                     "toy_ll", "--time", "10", "--", "--include-path", str(tasks), "--only-local-tasks",
                     "--device", "cpu", "--batch-size", "4"]) == 0
        assert main(["sweep", "lra", str(lra), "--models", "configs/lra/mlp-only-tiny.yaml", "--groups", "listops",
                     "--time", "10", "--", *LRA_ARGS]) == 0
    finally:
        os.chdir(cwd)
    _wait_ended([_ids(lm)["gather"], _ids(lra)["gather"]])
    return {"lm": lm, "lra": lra, "ckpt": ckpt}


@pytest.mark.slurm
def test_lm_sweep_is_one_array_gathered_into_one_table(sweeps):
    out = sweeps["lm"]
    ids = _ids(out)
    states = job_states([f"{ids['sweep']}_{i}" for i in range(4)] + [ids["gather"]])
    assert [s.state for s in states.values()] == ["COMPLETED", "COMPLETED", "FAILED", "FAILED", "COMPLETED"]
    # Element i = (model, group), model-major; each wrote its own results.
    elements = [json.loads((out / "elements" / str(i) / "element.json").read_text()) for i in range(4)]
    assert [(e["label"], e["group"]) for e in elements] == [("ckpt-a", "toy_mc"), ("ckpt-a", "toy_ll"),
                                                             ("no-such-ckpt", "toy_mc"), ("no-such-ckpt", "toy_ll")]
    primary = {}
    for i in (0, 1):
        results = json.loads((out / "elements" / str(i) / "results.json").read_text())
        primary.update({t: p["value"] for t, p in results["aira"]["primary"].items()})
    assert set(primary) == {"toy_mc", "toy_ll"}
    table = (out / "results.md").read_text()
    mean = (primary["toy_mc"] + primary["toy_ll"]) / 2
    assert (f"| ckpt-a | {100 * primary['toy_mc']:.1f} | {100 * primary['toy_ll']:.1f} | {100 * mean:.1f} |"
            in table), table
    assert "| model | toy_mc (acc_norm) | toy_ll (acc) | mean (2 common) |" in table
    assert "| no-such-ckpt | – | – | – |" in table
    assert "2 of 4 elements have results." in table
    for i, group in ((2, "toy_mc"), (3, "toy_ll")):  # the failure, with the stage's own error line
        assert f"| {i} | no-such-ckpt | {group} | failed | exit 2: aira eval lm: error: '" in table
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(r["model"], r["task"], r["status"]) for r in rows] == [
        ("ckpt-a", "toy_mc", "ok"), ("ckpt-a", "toy_ll", "ok"), ("no-such-ckpt", "", "failed"),
        ("no-such-ckpt", "", "failed")]
    assert float(rows[0]["value"]) == primary["toy_mc"]


@pytest.mark.slurm
def test_status_lists_every_element_and_the_log_of_failed_ones(sweeps, capsys):
    out = sweeps["lm"]
    ids = _ids(out)
    assert main(["status", str(out), "--tail", "3"]) == 0
    text = capsys.readouterr().out
    for i, state in enumerate(["COMPLETED", "COMPLETED", "FAILED", "FAILED"]):
        line = next(line for line in text.splitlines() if line.startswith(f"{ids['sweep']}_{i} "))
        assert state in line and ("exit 2:0" in line) == (state == "FAILED"), line
    assert f"--- {ids['sweep']}_2 sweep-lm: FAILED" in text
    assert "aira eval lm: error:" in text.split(f"--- {ids['sweep']}_2")[1]
    assert "3 completed, 2 failed" in text
    # gather by hand: the same table; exit 1 while elements failed, unless told that is fine
    assert main(["gather", str(out)]) == 1
    assert main(["gather", str(out), "--allow-failed"]) == 0


@pytest.mark.slurm
def test_lra_sweep_trains_and_tabulates_test_accuracy(sweeps):
    out = sweeps["lra"]
    results = json.loads((out / "elements" / "0" / "results.json").read_text())
    assert results["task"] == "listops" and results["name"] == "mlp-only-tiny" and results["steps"] == 6
    table = (out / "results.md").read_text()
    assert "| model | listops (test_acc) | mean (1 common) |" in table
    acc = f"{100 * results['test_acc']:.1f}"
    assert f"| mlp-only-tiny | {acc} | {acc} |" in table
    # The spec path, inside the project, was read from the job's code snapshot (relative to it).
    element = json.loads((out / "elements" / "0" / "element.json").read_text())
    assert element["model"] == "configs/lra/mlp-only-tiny.yaml"


def test_dry_run_renders_one_array_and_a_gather_after_it(tmp_path, capsys):
    assert main(["sweep", "lra", str(tmp_path / "s"), "--models", "a.yaml", "llama-proxy", "--groups", "listops",
                 "text", "--max-parallel", "2", "--gpus-per-node", "1", "--python", "/opt/py", "--dry-run",
                 "--", "train.max_steps=5"]) == 0
    script = capsys.readouterr().out
    out = tmp_path / "s"
    assert "#SBATCH --array=0-3%2" in script and "#SBATCH --gpus-per-node=1" in script
    cases = [line.strip() for line in script.splitlines() if line.strip()[:3] in ("0) ", "1) ", "2) ", "3) ")]
    assert cases == [
        f"0) /opt/py -u -m lra train listops a.yaml train.max_steps=5 run_dir={out}/elements/0 name=a ;;",
        f"1) /opt/py -u -m lra train text a.yaml train.max_steps=5 run_dir={out}/elements/1 name=a ;;",
        (f"2) /opt/py -u -m lra train listops llama-proxy train.max_steps=5 run_dir={out}/elements/2 "
         "name=llama-proxy ;;"),
        f"3) /opt/py -u -m lra train text llama-proxy train.max_steps=5 run_dir={out}/elements/3 name=llama-proxy ;;"]
    gather = script.split("# ---- gather job")[1]
    assert "#SBATCH --dependency=afterany:" in gather and f"/opt/py -m slurm gather {out} --allow-failed" in gather
    assert "--gpus-per-node" not in gather
    assert not out.exists()


def test_gather_lists_missing_and_failed_elements_with_reasons(tmp_path):
    from slurm.gather import gather

    out = tmp_path / "s"
    log = tmp_path / "el1.out"
    log.write_text("loading\nlra: error: data.root /data/lra_release does not exist\n")
    for i, (label, task) in enumerate([("gla", "listops"), ("gla", "text"), ("attn", "listops")]):
        d = out / "elements" / str(i)
        d.mkdir(parents=True)
        (d / "element.json").write_text(json.dumps({"index": i, "kind": "lra", "label": label, "group": task}))
    (out / "elements" / "0" / "results.json").write_text(json.dumps({"task": "listops", "val_acc": 0.5,
                                                                      "test_acc": 0.375}))
    (out / "elements" / "1" / "exit.json").write_text(json.dumps({"job": "9_1", "status": 1, "log": str(log)}))
    table = gather(out)
    assert [(f["index"], f["status"]) for f in table.failed] == [(1, "failed"), (2, "missing")]
    assert table.failed[0]["reason"] == "exit 1: lra: error: data.root /data/lra_release does not exist"
    assert table.failed[1]["reason"] == "not run: no sweep array recorded"
    assert "| gla | 37.5 | 37.5 |" in table.markdown and "| attn | – | – |" in table.markdown
    assert [(r["task"], r["metric"], r["value"]) for r in table.rows if r["status"] == "ok"] == [
        ("listops", "test_acc", 0.375), ("listops", "val_acc", 0.5)]
