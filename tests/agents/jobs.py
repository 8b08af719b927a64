"""Job functions the executor tests run in worker processes."""

import os
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
