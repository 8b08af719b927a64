"""Tabular benchmarks: a whole space built once (bench/tabular_build.py), then searched by lookup (kind: tabular)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agents.journal import Journal
from compose.cli import main
from compose.tabular import SCORE, build_order, enumerate_space, load

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    """A real (tiny) table: every 2-layer pattern over attn / mlp / mamba2, two seeds, two budgets."""
    out = tmp_path_factory.mktemp("tables")
    cmd = [sys.executable, str(ROOT / "bench/tabular_build.py"), "--name", "tiny", "--layers", "2",
           "--budgets", "4,8", "--seeds", "0,1", "--tasks", "compression", "--workers", "2",
           "--out-dir", str(out), "--build-dir", str(out / "build")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    return out / "tiny.csv"


def test_the_table_holds_every_pattern_seed_and_budget(table):
    t = load(str(table))
    assert t.budgets == [4, 8]
    assert sorted(t.patterns()) == sorted("-".join(p) for p in enumerate_space(["attn", "mlp", "mamba2"], 2))
    for rows in t.rows.values():
        assert sorted(r["seed"] for r in rows) == [0, 1]
        assert all(0.0 <= r["mad_error"] <= 1.0 for r in rows)
    assert t.meta["space"]["n_layers"] == 2 and t.meta["progress"]["done"] == 18
    assert "bench/tabular_build.py" in t.meta["command"] and t.meta["versions"]["torch"]
    assert t.meta["commands"] == [t.meta["command"]] and t.meta["aira_commits"] == [t.meta["versions"]["aira"]]
    assert t.complete


def test_a_build_continues_from_the_written_table_without_its_job_folder(table, tmp_path):
    """A fresh checkout has the table but not runs/: the finished cells are not trained again."""
    cmd = [sys.executable, str(ROOT / "bench/tabular_build.py"), "--name", "tiny", "--layers", "2",
           "--budgets", "4,8", "--seeds", "0,1", "--tasks", "compression", "--out-dir", str(table.parent),
           "--build-dir", str(tmp_path / "fresh"), "--status"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert "18/18 cells done" in r.stdout


def test_build_order_is_a_fixed_permutation():
    space = enumerate_space(["a", "b", "c"], 3)
    order = build_order(space)
    assert len(space) == 27 and sorted(map(tuple, order)) == sorted(map(tuple, space))
    assert order == build_order(space) and order != space


def _config(tmp_path: Path, table: Path, **tabular) -> Path:
    cfg = {"name": "tab", "kind": "tabular",
           "space": {"n_layers": 2, "allowed": ["attn", "mlp", "mamba2"], "d_model": 32, "max_seq_len": 128},
           "tabular": {"table": str(table), **tabular},
           "search": {"policy": "evolutionary", "policy_args": {"individuals_per_generation": 3}, "n_agents": 2,
                      "n_workers": 2, "max_evals": 8, "reuse_workers": True, "seed": 0}}
    path = tmp_path / "tab.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_tabular_search_scores_by_lookup_with_the_measured_seed_noise(table, tmp_path, capsys):
    t = load(str(table))
    run = tmp_path / "run"
    assert main(["search", str(_config(tmp_path, table)), f"run_dir={run}"]) == 0
    with Journal(run / "journal.db") as j:
        done = j.nodes("done")
    assert len(done) == 8
    for n in done:
        measured = {r["mad_error"] for r in t.rows[("-".join(n.payload["pattern"]), 8)]}
        assert n.metrics[SCORE] in measured  # one measured seed's value, not a model of the noise
        assert n.metrics["budget"] == 8 and f"test_{SCORE}" in n.metrics
    assert main(["leaderboard", str(run)]) == 0
    assert SCORE in capsys.readouterr().out


def test_seed_noise_off_gives_the_seed_mean_and_the_budget_picks_the_fidelity(table, tmp_path):
    t = load(str(table))
    run = tmp_path / "run"
    assert main(["search", str(_config(tmp_path, table, seed_noise=False, budget=4)), f"run_dir={run}",
                 "search.max_evals=4"]) == 0
    mean = t.mean(budget=4)
    with Journal(run / "journal.db") as j:
        for n in j.nodes("done"):
            assert n.metrics[SCORE] == pytest.approx(mean["-".join(n.payload["pattern"])])
            assert n.metrics["budget"] == 4


def test_tabular_config_errors_name_what_to_change(table, tmp_path, capsys):
    cfg = _config(tmp_path, table)
    assert main(["search", str(cfg), "tabular.table=no-such-table"]) == 2
    assert "no table 'no-such-table'" in capsys.readouterr().err
    assert main(["search", str(cfg), "space.n_layers=3"]) == 2
    assert "covers 2 layers" in capsys.readouterr().err
    assert main(["search", str(cfg), "tabular.budget=7"]) == 2
    assert "has budgets [4, 8], not 7" in capsys.readouterr().err


def _asha_run(tmp_path: Path, table: Path, max_evals: int) -> Path:
    """A finished asha search on the table: rungs at its two budgets, the best half climbs."""
    path = _config(tmp_path, table)
    cfg = yaml.safe_load(path.read_text())
    cfg["search"] |= {"policy": "asha", "policy_args": {"eta": 2}, "n_agents": 1, "max_evals": max_evals}
    cfg["rungs"] = [4, 8]
    path.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    assert main(["search", str(path), f"run_dir={run}"]) == 0
    return run


def test_asha_reads_low_budgets_first_and_a_promotion_reads_the_same_run_further(table, tmp_path):
    run = _asha_run(tmp_path, table, max_evals=12)
    with Journal(run / "journal.db") as j:
        done = {n.id: n for n in j.nodes("done")}
    up = [n for n in done.values() if n.operator == "promote"]
    assert up and all(n.metrics["budget"] == 8 and n.payload["rung"] == 1 for n in up)
    assert all(n.metrics["budget"] == 4 for n in done.values() if n.operator != "promote")
    for n in up:
        parent = done[n.parent_ids[0]]
        assert n.payload["pattern"] == parent.payload["pattern"]
        assert n.metrics["seed"] == parent.metrics["seed"]  # the same measured run, read at a later budget
        assert n.key == f"{parent.key}@8"


@pytest.mark.parametrize("change,message", [
    ({"rungs": [4, 8]}, "only a multi-fidelity policy"),
    ({"search": {"policy": "asha"}}, "needs `rungs"),
    ({"search": {"policy": "asha"}, "rungs": [4, 16]}, "not [16]"),
    ({"search": {"policy": "asha"}, "rungs": [8, 4]}, "increasing"),
    ({"search": {"policy": "asha", "finalists": 1}, "rungs": [4, 8]}, "finalists with a multi-fidelity policy"),
])
def test_rung_settings_that_cannot_work_are_config_errors(table, tmp_path, capsys, change, message):
    path = _config(tmp_path, table)
    cfg = yaml.safe_load(path.read_text())
    for k, v in change.items():
        cfg[k] = cfg[k] | v if isinstance(v, dict) else v
    path.write_text(yaml.safe_dump(cfg))
    assert main(["search", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_on_mad_a_rung_trains_its_steps_of_one_schedule_and_a_promotion_continues_it():
    from agents.journal import Node
    from agents.policies import Action
    from compose.space import SearchSpace
    from compose.task import ComposeTask, DataConfig

    task = ComposeTask(SearchSpace(n_layers=2, allowed=["attn", "mlp"]), {}, DataConfig(), kind="mad",
                       mad={"tasks": ["compression"]}, rungs=[50, 200])
    assert task.fidelities() == [50, 200]
    parent = Node("draft", "a", task.check(["attn", "mlp"]).payload, status="done", metrics={"mad_error": 0.5},
                  seq=7)
    # the low rung trains 50 steps of the 200-step schedule and keeps its state for a promotion
    assert task.job_payload(parent)["mad"] == {"tasks": ["compression"], "steps": 50, "schedule_steps": 200,
                                               "checkpoint": "n7-rung0"}
    prop = task.propose(Action("promote", [parent]), None)
    child = Node("promote", "a", prop.payload, [parent.id], key=prop.key, seq=12)
    assert task.job_payload(child)["mad"] == {"tasks": ["compression"], "steps": 200, "schedule_steps": 200,
                                              "resume_from": "n7-rung0"}
    assert prop.key.endswith("@200")
    last = task.propose(Action("promote", [child]), None)
    assert "last of 2 rungs" in last.error


def test_asha_on_mad_continues_promoted_runs_to_the_numbers_of_an_unbroken_run(tmp_path):
    """A real asha search on MAD: each promotion resumes its rung-0 checkpoint and ends on exactly what one
    uninterrupted run of the top rung's steps gives (what a table records); the checkpoints go at the end."""
    from compose.mad import MADConfig, evaluate_mad
    from models.spec import ArchSpec

    mad = {"tasks": ["compression"], "n_train": 32, "n_test": 16, "batch_size": 8, "device": "cpu", "dtype": "fp32",
           "threads": 1}
    cfg = {"name": "asha-mad", "kind": "mad", "mad": mad, "rungs": [3, 9],
           "space": {"n_layers": 2, "allowed": ["attn", "mlp"], "d_model": 16, "max_seq_len": 64,
                     "primitives": {"attn": {"type": "attn", "n_heads": 2}, "mlp": {"type": "mlp", "hidden": 32}}},
           "search": {"policy": "asha", "policy_args": {"eta": 2}, "n_agents": 1, "n_workers": 1, "max_evals": 6,
                      "reuse_workers": True, "seed": 0}}
    path = tmp_path / "asha.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    assert main(["search", str(path), f"run_dir={run}"]) == 0
    with Journal(run / "journal.db") as j:
        done = j.nodes("done")
    promoted = [n for n in done if n.operator == "promote"]
    assert promoted and all(n.metrics["steps/compression"] == 9 for n in promoted)
    assert all(n.metrics["resumed_at/compression"] == 3 for n in promoted)  # continued, not retrained
    for n in promoted:
        spec = ArchSpec.from_dict(n.payload["spec"])
        unbroken = evaluate_mad(spec, MADConfig(**mad, steps=9))
        assert n.metrics["mad_error"] == unbroken["mad_error"]
        assert n.metrics["test_mad_error"] == unbroken["test_mad_error"]
    assert not (run / "checkpoints").exists()


def test_rung_checkpoints_past_their_disk_budget_go_worst_first(tmp_path):
    from compose.task import keep_checkpoints

    for name, score in (("n1-rung0", 0.5), ("n2-rung0", 0.9), ("n3-rung0", 0.2)):
        (tmp_path / f"{name}.pt").write_bytes(b"x" * 2**20)
        keep_checkpoints(tmp_path / f"{name}.pt", score, limit_mb=2.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n1-rung0.json", "n1-rung0.pt", "n3-rung0.json",
                                                          "n3-rung0.pt"]
    keep_checkpoints(tmp_path / "n3-rung0.pt", 0.2, limit_mb=0)  # 0: keep none
    assert list(tmp_path.iterdir()) == []


def test_the_leaderboard_of_a_multi_fidelity_run_ranks_its_highest_rung(table, tmp_path, capsys):
    from compose.results import load_run

    ranked = load_run(_asha_run(tmp_path, table, max_evals=9)).scored()
    assert ranked and all(n.payload["rung"] == 1 for n in ranked)


def test_finalists_are_re_read_with_the_other_seed_and_crowned_by_their_mean(table, tmp_path, capsys):
    from compose.results import load_run

    path = _config(tmp_path, table)
    run = tmp_path / "run"
    # Proposals stop at 5 evaluations: the last 2 of max_evals=7 re-read the best two (without resuming
    # first: max_evals=5, no finalists; then resumed with finalists, as a search killed before them is).
    assert main(["search", str(path), f"run_dir={run}", "search.max_evals=5"]) == 0
    with Journal(run / "journal.db") as j:
        first = sorted(j.nodes("done"), key=lambda n: (n.metrics[SCORE], n.seq))
    assert main(["resume", str(run), "search.max_evals=7", "search.finalists=2", "search.finalist_evals=1"]) == 0
    with Journal(run / "journal.db") as j:
        done = {n.id: n for n in j.nodes("done")}
        journalled = len(j.nodes())
    rereads = [n for n in done.values() if n.operator == "reeval"]
    assert len(done) == 7 and len(rereads) == 2
    assert {n.parent_ids[0] for n in rereads} == {first[0].id, first[1].id}
    for n in rereads:
        parent = done[n.parent_ids[0]]
        assert n.payload["pattern"] == parent.payload["pattern"] and n.metrics["seed"] != parent.metrics["seed"]
    crowned = load_run(run).scored()
    t = load(str(table))
    for n in crowned[:2]:  # the finalists lead, each ranked by the mean of its two reads: the seed mean here
        assert n.metrics["evals"] == 2
        assert n.metrics[SCORE] == pytest.approx(t.mean(8)["-".join(n.payload["pattern"])])
        assert isinstance(n.metrics["params"], int)  # shared by both reads: kept, not averaged into a float
    assert all("evals" not in n.metrics for n in crowned[2:]) and len(crowned) == 5
    # As if killed in the middle of the phase (one re-read still running): no finalist is crowned on
    # fewer reads than planned; every node ranks by its own read until the resume finishes the phase.
    with Journal(run / "journal.db") as j:
        j.update(rereads[0].id, status="running")
    half = load_run(run)
    assert half.finalists_pending() and [n.id for n in half.scored()] == [n.id for n in first]
    assert main(["leaderboard", str(run)]) == 0
    assert "re-evaluation is unfinished" in capsys.readouterr().out
    assert main(["resume", str(run), "search.max_evals=7", "search.finalists=2", "search.finalist_evals=1"]) == 0
    with Journal(run / "journal.db") as j:
        assert len(j.nodes()) == journalled  # the running re-read was finished, no finalist is re-read twice
    assert not load_run(run).finalists_pending()
    assert [n.id for n in load_run(run).scored()] == [n.id for n in crowned]
    assert main(["leaderboard", str(run)]) == 0
    assert "(mean of 2)" in capsys.readouterr().out


def test_a_text_proxy_table_is_built_the_same_way_and_searched_by_its_own_metric(tmp_path):
    out = tmp_path / "tables"
    cmd = [sys.executable, str(ROOT / "bench/tabular_build.py"), "--suite", "text", "--layers", "2",
           "--primitives", "attn,mlp", "--budgets", "4096", "--seeds", "0", "--workers", "2",
           "--out-dir", str(out), "--build-dir", str(tmp_path / "build")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    t = load(str(out / "text-3x6.csv"))
    assert t.metric == "val_bpb" and t.meta["suite"]["kind"] == "text" and t.budgets == [4096]
    assert len(t.patterns()) == 4 and all(0 < v < 9 for v in t.mean().values())  # bits per byte of a tiny model
    row = t.lookup(["attn", "mlp"], draw=0)
    assert row[SCORE] == row["val_bpb"] and row[f"test_{SCORE}"] == row["test_val_bpb"]
    # Given a second, smaller budget, the table builds its cells again as one run read at both: the
    # 4096-token values stay exactly what they were (a read part way does not change the run).
    r = subprocess.run([*cmd[:cmd.index("--budgets") + 1], "2048,4096", *cmd[cmd.index("--budgets") + 2:]],
                       capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    load.cache_clear()  # rewritten by another process
    both = load(str(out / "text-3x6.csv"))
    assert both.budgets == [2048, 4096] and len(both.patterns(2048)) == 4 and both.complete
    assert both.mean(4096) == t.mean(4096)
    assert all(both.mean(2048)[k] > both.mean(4096)[k] - 0.2 for k in both.mean(4096))  # half the tokens


def test_finalists_that_would_take_the_whole_budget_are_refused(table, tmp_path, capsys):
    assert main(["search", str(_config(tmp_path, table)), "search.max_evals=3", "search.finalists=3"]) == 2
    assert "leaves none of search.max_evals (3)" in capsys.readouterr().err


def test_a_build_continues_with_the_tables_own_settings_and_refuses_other_ones(table, tmp_path):
    base = [sys.executable, str(ROOT / "bench/tabular_build.py"), "--name", "tiny", "--out-dir", str(table.parent),
            "--build-dir", str(tmp_path / "fresh"), "--status"]
    r = subprocess.run(base, capture_output=True, text=True, timeout=300, check=False)
    assert "18/18 cells done" in r.stdout  # layers, budgets, seeds and tasks read from tiny.json
    r = subprocess.run([*base, "--layers", "3"], capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode != 0 and "was built with --layers 2, not 3" in r.stderr


def test_a_finalists_phase_with_fewer_scored_nodes_than_finalists_is_complete():
    from agents.journal import Node
    from compose.results import Run

    cfg = {"search": {"finalists": 3, "finalist_evals": 1}}
    a = Node("draft", "a", {"pattern": ["attn"]}, status="done", metrics={SCORE: 0.2}, seq=1)
    b = Node("draft", "a", {"pattern": ["mlp"]}, status="done", metrics={SCORE: 0.3}, seq=2)
    nan = Node("draft", "a", {"pattern": ["mamba2"]}, status="done", metrics={SCORE: float("nan")}, seq=3)
    rereads = [Node("reeval", "a", n.payload, [n.id], status="done", metrics={SCORE: 0.25}, seq=4 + i)
               for i, n in enumerate((a, b))]
    run = Run(path=Path("."), config=cfg, nodes=[a, b, nan, *rereads], metric=SCORE)
    assert not run.finalists_pending()  # only 2 scored candidates: both re-read, the phase is over
    assert [n.metrics["evals"] for n in run.scored()[:2]] == [2, 2]
    assert not Run(path=Path("."), config={"search": {"finalists": 3, "leaderboard_size": 1}},
                   nodes=[a, b, rereads[0]], metric=SCORE).finalists_pending()  # the board held 1


def test_an_llm_agent_searches_the_table_and_its_replay_needs_neither_server_nor_key(table, tmp_path, monkeypatch,
                                                                                      capsys):
    """The issue's point of a table: LLM agents too run on it in seconds (real SDK, real HTTP on loopback),
    and a replay reads every reply and lookup back offline."""
    from tests.agents.llm_server import ScriptedLLMServer

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    patterns = iter([["mamba2", "attn"], ["attn", "attn"], ["mlp", "mamba2"], ["attn", "mlp"]])

    def reply(body):  # an "LLM" that proposes the next pattern of its list, whatever it is asked
        return {"text": f"```json\n{json.dumps({'pattern': next(patterns), 'rationale': 'try it'})}\n```",
                "tokens_in": 50, "tokens_out": 10}

    path = _config(tmp_path, table)
    cfg = yaml.safe_load(path.read_text())
    cfg["search"] |= {"policy": "greedy", "policy_args": {"num_drafts": 2}, "n_agents": 1, "max_evals": 4}
    run = tmp_path / "run"
    with ScriptedLLMServer(default=reply) as srv:
        cfg["llm"] = {"backend": "openai", "model": "scripted-1", "base_url": srv.openai_url, "timeout_s": 10,
                      "max_retries": 0}
        path.write_text(yaml.safe_dump(cfg))
        assert main(["search", str(path), f"run_dir={run}"]) == 0
        prompts = [b["messages"][1]["content"] for b in srv.requests]
    t = load(str(table))
    with Journal(run / "journal.db") as j:
        done = j.nodes("done")
    assert [n.payload["pattern"] for n in done] == [["mamba2", "attn"], ["attn", "attn"], ["mlp", "mamba2"],
                                                    ["attn", "mlp"]]
    for n in done:
        assert n.metrics[SCORE] in {r["mad_error"] for r in t.rows[("-".join(n.payload["pattern"]), 8)]}
    # the improve prompts show the parents' table scores, never the hidden test split
    assert len(prompts) == 4 and f"{SCORE}: " in prompts[2] and all("test_" not in p for p in prompts)
    capsys.readouterr()
    monkeypatch.delenv("OPENAI_API_KEY")  # the server is gone too
    assert main(["replay", str(run)]) == 0
    assert "replay reached the same journal: 4 nodes" in capsys.readouterr().out


def test_a_replay_warns_when_the_table_changed_since_the_search(table, tmp_path, capsys):
    import shutil

    from compose.tabular import read_rows, write_rows

    mine = tmp_path / "mine.csv"
    shutil.copy(table, mine)
    shutil.copy(table.with_suffix(".json"), mine.with_suffix(".json"))
    run = tmp_path / "run"
    assert main(["search", str(_config(tmp_path, mine)), f"run_dir={run}", "search.max_evals=4"]) == 0
    capsys.readouterr()
    assert main(["replay", str(run)]) == 0
    assert "has changed" not in capsys.readouterr().err
    write_rows(mine, [r for r in read_rows(mine) if r["seed"] == 0])  # as if seed 1 were not built yet
    load.cache_clear()
    main(["replay", str(run), "--out", str(tmp_path / "again")])
    assert f"table {mine} has changed since this search ran" in capsys.readouterr().err
