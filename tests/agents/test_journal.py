"""The journal: durable, ordered, one transaction per write, readable after a crash."""

import multiprocessing as mp
import os
import sqlite3

import pytest

from agents.journal import Journal, Node


def test_add_get_update_roundtrip(tmp_path):
    j = Journal(tmp_path / "run" / "journal.db")
    a = j.add(Node("draft", "agent-0", {"pattern": ["attn", "mlp"]}, key="h1"))
    b = j.add(Node("improve", "agent-1", {"pattern": ["mlp"]}, parent_ids=[a.id], key="h2"))
    assert (a.seq, b.seq) == (1, 2)
    j.update(a.id, status="done", metrics={"val_bpb": 2.5}, finished_at=1.0)
    got = j.get(a.id)
    assert got.status == "done" and got.metrics == {"val_bpb": 2.5} and got.finished
    assert j.get(b.id).parent_ids == [a.id]
    assert [n.id for n in j] == [a.id, b.id] and len(j) == 2
    assert [n.id for n in j.unfinished()] == [b.id]
    assert j.has_key("h2") and not j.has_key("h3")


def test_best_orders_by_metric_and_skips_unfinished(tmp_path):
    j = Journal(tmp_path / "j.db")
    for i, v in enumerate([3.0, 1.0, 2.0]):
        n = j.add(Node("draft", "a", {"i": i}))
        j.update(n.id, status="done", metrics={"bpb": v})
    j.add(Node("draft", "a", {"i": 9}))  # pending, no metric
    assert [n.payload["i"] for n in j.best("bpb", n=2)] == [1, 2]
    assert [n.payload["i"] for n in j.best("bpb", minimize=False)] == [0]


def test_bad_status_and_unknown_node_are_clear_errors(tmp_path):
    j = Journal(tmp_path / "j.db")
    with pytest.raises(ValueError, match="status"):
        j.add(Node("draft", "a", {}, status="weird"))
    with pytest.raises(KeyError, match="no node"):
        j.update("nope", status="done")
    with pytest.raises(ValueError, match="cannot update"):
        j.update(j.add(Node("draft", "a", {})).id, operator="x")


def _write_then_die(path):
    j = Journal(path)
    j.add(Node("draft", "a", {"n": 1}))
    n = j.add(Node("draft", "a", {"n": 2}))
    j.update(n.id, status="running")
    os._exit(9)  # no close, no cleanup: as if killed


def test_committed_writes_survive_a_killed_writer(tmp_path):
    path = tmp_path / "j.db"
    p = mp.get_context("spawn").Process(target=_write_then_die, args=(path,))
    p.start()
    p.join(60)
    assert p.exitcode == 9
    j = Journal(path)
    assert [n.payload["n"] for n in j] == [1, 2]
    assert [n.status for n in j.unfinished()] == ["pending", "running"]
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_meta_values(tmp_path):
    j = Journal(tmp_path / "j.db")
    assert j.meta("config", {}) == {}
    j.set_meta("config", {"agents": 11})
    j.set_meta("config", {"agents": 2})
    assert Journal(tmp_path / "j.db").meta("config") == {"agents": 2}
