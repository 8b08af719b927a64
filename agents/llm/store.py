"""Content-addressed store of every LLM request and its reply, inside the run directory.

A request (backend, model, messages, sampling settings and a caller-chosen nonce such as
"agent-0/step-7") is hashed to a key; its record lives in STORE/<key[:2]>/<key>.json and holds the
request, the reply text, token usage and the errors met on the way. A key that is already stored is
answered from the store without any network call, which makes a resumed search repeat no call and a
replayed one (`replay=True`) run offline and make the same choices.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def canonical_json(obj: Any) -> str:
    """One spelling per value: sorted keys, no spaces, unicode kept, so equal requests hash equally."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_key(request: dict[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of a request."""
    return hashlib.sha256(canonical_json(request).encode("utf-8")).hexdigest()


class PromptStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        p = self.path(key)
        if not p.exists():
            return None
        return json.loads(p.read_text(encoding="utf-8"))

    def put(self, key: str, record: dict[str, Any]) -> Path:
        """Write a record atomically (temp file + rename): a killed run never leaves half a record."""
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{key[:8]}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(record, f, indent=1, ensure_ascii=False)
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return p

    def __contains__(self, key: str) -> bool:
        return self.path(key).exists()

    def records(self) -> Iterator[dict[str, Any]]:
        """Every stored record, in key order."""
        if not self.root.is_dir():
            return
        for p in sorted(self.root.glob("??/*.json")):
            yield json.loads(p.read_text(encoding="utf-8"))
