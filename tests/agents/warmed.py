"""An entry module with a warm-up, for tests/agents/test_sandbox.py (agents.sandbox.WarmSandbox)."""

import os
import time

WARMED_AT: float | None = None


def warm() -> None:
    global WARMED_AT
    if os.environ.get("WARM_FAIL"):
        raise RuntimeError("the warm-up failed on purpose")
    WARMED_AT = time.time()


def report(payload):
    return {"warmed_at": WARMED_AT, "ran_at": time.time(), "payload": payload}
