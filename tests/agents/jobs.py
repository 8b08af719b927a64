"""Job functions the executor tests run in worker processes."""

import os
import subprocess
import time


def square(payload):
    return {"y": payload["x"] ** 2, "pid": os.getpid()}


def boom(payload):
    raise RuntimeError("agent code is broken")


def sleep(payload):
    start = time.time()
    time.sleep(payload["s"])
    return [start, time.time()]


def hard_exit(payload):
    os._exit(3)


def hog(payload):
    return len(bytearray(payload["mb"] * 2**20))


def score(payload):
    """A cheap stand-in for a proxy run: a visible and a hidden (test_) metric of a number."""
    time.sleep(payload.get("sleep", 0.0))
    x = payload["x"]
    return {"loss": (x - 3) ** 2, "test_loss": (x - 3) ** 2 + 0.5}


def sleep_with_child(payload):
    """Sleep with a child process (as a DataLoader worker would be), after writing both pids for the test."""
    child = subprocess.Popen(["sleep", "600"])
    tmp = payload["pids_file"] + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()} {child.pid}")
    os.replace(tmp, payload["pids_file"])
    time.sleep(payload["s"])


def serving(payload):
    from agents.worker import serving

    return serving()
