"""The journal: every solution node of a search, in SQLite (WAL) inside the run directory.

Only the coordinator writes it; workers hand results back through the executor. A node is created
`pending` before it is evaluated and moves to `running`, then to one terminal status, so a search
killed at any moment resumes by re-submitting the nodes that never reached a terminal status: no
finished evaluation is lost and none is repeated.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATUSES = ("pending", "running", "done", "failed", "invalid")
TERMINAL = ("done", "failed", "invalid")
# Named, not `*`: a journal that gained `wave` by ALTER TABLE reads the same.
_SELECT = ("id, seq, parent_ids, operator, agent_id, key, payload, status, metrics, error, "
           "created_at, started_at, finished_at, wave")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    parent_ids TEXT NOT NULL,
    operator TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    key TEXT,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    metrics TEXT NOT NULL,
    error TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    wave INTEGER
);
CREATE INDEX IF NOT EXISTS nodes_status ON nodes(status);
CREATE INDEX IF NOT EXISTS nodes_key ON nodes(key);
CREATE INDEX IF NOT EXISTS nodes_seq ON nodes(seq);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass
class Node:
    """One solution: what was proposed (payload), by whom and how, and what its evaluation gave."""

    operator: str
    agent_id: str
    payload: dict[str, Any]
    parent_ids: list[str] = field(default_factory=list)
    key: str | None = None  # dedup key, e.g. the spec hash; None = never a duplicate
    status: str = "pending"
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    seq: int = 0  # insertion order, set by the journal
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    wave: int | None = None  # results the coordinator recorded together share a wave (replay order)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


class Journal:
    """SQLite-backed store of nodes. Writes are committed one transaction at a time."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(nodes)")}
        if "wave" not in columns:  # a journal written before waves existed: add the column, keep the rows
            self._db.execute("ALTER TABLE nodes ADD COLUMN wave INTEGER")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Journal:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writes

    def add(self, node: Node) -> Node:
        """Store a new node; sets its `seq` and gives it its payload as a read would return it (JSON form)."""
        if node.status not in STATUSES:
            raise ValueError(f"status {node.status!r} is not one of {', '.join(STATUSES)}")
        payload = json.dumps(node.payload)
        with self._tx():
            # Indexed (nodes_seq): a lookup, not a scan, whatever the journal's size.
            node.seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM nodes").fetchone()[0]
            self._db.execute(
                "INSERT INTO nodes VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (node.id, node.seq, json.dumps(node.parent_ids), node.operator, node.agent_id, node.key,
                 payload, node.status, json.dumps(node.metrics), node.error,
                 node.created_at, node.started_at, node.finished_at, node.wave))
        # The stored form, so a coordinator that keeps this object sees what a resumed one reads back.
        node.payload = json.loads(payload)
        return node

    def update(self, node_id: str, **changes: Any) -> Node:
        """Change fields of a stored node (status, metrics, error, timings); returns the node as stored."""
        self.change(node_id, **changes)
        return self.get(node_id)

    def change(self, node_id: str, **changes: Any) -> dict[str, Any]:
        """`update` without reading the node back: returns `changes` as a read would give them (JSON form),
        for a writer that keeps its own copy of the node (the coordinator)."""
        allowed = {"status", "metrics", "error", "started_at", "finished_at", "payload", "wave"}
        bad = set(changes) - allowed
        if bad:
            raise ValueError(f"cannot update {sorted(bad)}; updatable: {sorted(allowed)}")
        if "status" in changes and changes["status"] not in STATUSES:
            raise ValueError(f"status {changes['status']!r} is not one of {', '.join(STATUSES)}")
        cols, vals, stored = [], [], dict(changes)
        for k, v in changes.items():
            cols.append(f"{k} = ?")
            if k in ("metrics", "payload"):
                v = json.dumps(v)
                stored[k] = json.loads(v)
            vals.append(v)
        with self._tx():
            cur = self._db.execute(f"UPDATE nodes SET {', '.join(cols)} WHERE id = ?", (*vals, node_id))
            if cur.rowcount != 1:
                raise KeyError(f"no node {node_id!r} in {self.path}")
        return stored

    def set_meta(self, name: str, value: Any) -> None:
        with self._tx():
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, json.dumps(value)))

    # ------------------------------------------------------------------ reads

    def get(self, node_id: str) -> Node:
        row = self._db.execute(f"SELECT {_SELECT} FROM nodes WHERE id = ?", (node_id,)).fetchone()
        if row is None:
            raise KeyError(f"no node {node_id!r} in {self.path}")
        return _node(row)

    def payload(self, node_id: str) -> dict[str, Any]:
        """The payload of one node (for a node read with payloads=False)."""
        row = self._db.execute("SELECT payload FROM nodes WHERE id = ?", (node_id,)).fetchone()
        if row is None:
            raise KeyError(f"no node {node_id!r} in {self.path}")
        return json.loads(row[0])

    def nodes(self, status: str | tuple[str, ...] | None = None, payloads: bool = True) -> list[Node]:
        """All nodes in insertion order, optionally only those with the given status(es).

        payloads=False leaves every payload in SQLite (the node's payload is UNLOADED, `payload(id)`
        reads it): a coordinator's index of 100k nodes then holds no code or specs."""
        columns = _SELECT if payloads else _SELECT.replace("payload", "NULL")
        if status is None:
            rows = self._db.execute(f"SELECT {columns} FROM nodes ORDER BY seq")
        else:
            wanted = (status,) if isinstance(status, str) else tuple(status)
            marks = ",".join("?" * len(wanted))
            rows = self._db.execute(f"SELECT {columns} FROM nodes WHERE status IN ({marks}) ORDER BY seq", wanted)
        return [_node(r) for r in rows]

    def unfinished(self) -> list[Node]:
        """Nodes that were proposed but never reached a terminal status (to re-run on resume)."""
        return self.nodes(("pending", "running"))

    def has_key(self, key: str) -> bool:
        return self._db.execute("SELECT 1 FROM nodes WHERE key = ? LIMIT 1", (key,)).fetchone() is not None

    def by_key(self, key: str) -> list[Node]:
        return [_node(r) for r in self._db.execute(f"SELECT {_SELECT} FROM nodes WHERE key = ? ORDER BY seq", (key,))]

    def best(self, metric: str, minimize: bool = True, n: int = 1) -> list[Node]:
        """The n finished nodes with the best value of `metric`."""
        done = [nd for nd in self.nodes("done") if isinstance(nd.metrics.get(metric), (int, float))]
        return sorted(done, key=lambda nd: nd.metrics[metric] if minimize else -nd.metrics[metric])[:n]

    def meta(self, name: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return default if row is None else json.loads(row[0])

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM nodes").fetchone()[0]

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes())

    # ------------------------------------------------------------------ internals

    def _tx(self):
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error, so a crash never leaves half a write."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


class _Unloaded:
    """A payload left in SQLite (Journal.nodes(payloads=False)). Reading it is a bug, and says so, rather
    than passing for an empty payload: whoever needs payloads reads them with Journal.payload(id)."""

    def _refuse(self, *args: object) -> Any:
        raise RuntimeError("this node was read without its payload (Journal.nodes(payloads=False)); read it with "
                           "Journal.payload(node.id), or give the policy `reads_payloads = True`")

    __getitem__ = __contains__ = __iter__ = __len__ = get = keys = items = values = _refuse

    def __repr__(self) -> str:
        return "UNLOADED"

    def __reduce__(self) -> str:
        return "UNLOADED"  # copies and pickles stay the one sentinel (`payload is UNLOADED` holds)


UNLOADED: Any = _Unloaded()


def _node(row: tuple) -> Node:
    (id_, seq, parents, op, agent, key, payload, status, metrics, error, created, started, finished, wave) = row
    return Node(id=id_, seq=seq, parent_ids=json.loads(parents), operator=op, agent_id=agent, key=key,
                payload=UNLOADED if payload is None else json.loads(payload), status=status,
                metrics=json.loads(metrics), error=error, created_at=created, started_at=started,
                finished_at=finished, wave=wave)


def as_dict(node: Node) -> dict[str, Any]:
    return asdict(node)
