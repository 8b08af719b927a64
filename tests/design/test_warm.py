"""design.evaluate's warm sandboxes: which one a candidate gets, and that none is left behind."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from agents.sandbox import SandboxLimits
from design import evaluate as ev


class FakeBox:
    """Stands in for agents.sandbox.WarmSandbox (no process): records what happens to it."""

    made: ClassVar[list[FakeBox]] = []

    def __init__(self, entry, workdir, limits, readable=(), env=None, payload=None):
        self.workdir, self.limits, self.closed, self.ran, self.dead = Path(workdir), limits, False, False, False
        FakeBox.made.append(self)

    @property
    def alive(self) -> bool:
        return not (self.closed or self.ran or self.dead)

    def close(self) -> None:
        self.closed = True

    def run(self, payload):
        self.ran = True
        return payload


@pytest.fixture
def boxes(monkeypatch, tmp_path):
    import agents.sandbox

    FakeBox.made = []
    monkeypatch.setattr(agents.sandbox, "WarmSandbox", FakeBox)
    monkeypatch.setattr(ev, "_warm", {})
    (tmp_path / "root" / "work").mkdir(parents=True)
    return tmp_path / "root"


def test_a_candidate_gets_the_warmed_sandbox_when_it_fits_and_waits(boxes):
    limits = SandboxLimits()
    first = ev._sandbox(boxes, limits)
    assert not getattr(first, "warmed", False) and first.workdir.parent == boxes / "work"
    assert first.workdir.name.startswith(ev.LIVE) and len(first.workdir.name) == len(ev.LIVE) + 16
    ev._warm.update(key=ev._key(boxes, limits), box=ev._sandbox(boxes, limits, fresh=True))
    nxt = ev._warm["box"]
    assert ev._sandbox(boxes, limits) is nxt and nxt.warmed and ev._warm == {}


@pytest.mark.parametrize("why", ["other limits", "warm-up died"])
def test_a_warmed_sandbox_that_does_not_fit_is_ended_and_its_folder_removed(boxes, why):
    limits = SandboxLimits()
    ev._warm.update(key=ev._key(boxes, limits), box=ev._sandbox(boxes, limits, fresh=True))
    old = ev._warm["box"]
    if why == "warm-up died":
        old.dead = True
    got = ev._sandbox(boxes, SandboxLimits(wall_s=1.0) if why == "other limits" else limits)
    assert got is not old and old.closed and not old.workdir.exists() and ev._warm == {}


def test_a_failure_before_the_run_ends_the_sandbox_and_removes_its_folder(boxes, tmp_path):
    box = ev._sandbox(boxes, SandboxLimits())
    (box.workdir / "candidate.py").symlink_to(tmp_path / "elsewhere.py")  # never written through
    with pytest.raises(FileExistsError):
        ev._run_in(box, "print('hi')", {"candidate": "candidate.py"}, tmp_path / "jobs" / "n1", boxes, warm_next=False)
    assert box.closed and not box.ran and not box.workdir.exists() and not (tmp_path / "elsewhere.py").exists()


def test_a_run_starts_the_next_sandbox_and_cleans_its_own_folder(boxes, tmp_path):
    limits = SandboxLimits()
    box = ev._sandbox(boxes, limits)
    out = ev._run_in(box, "x = 1\n", {"candidate": "candidate.py"}, tmp_path / "jobs" / "n1", boxes, warm_next=True)
    assert out == {"candidate": "candidate.py"} and box.ran and not box.workdir.exists()
    assert ev._warm["box"] is FakeBox.made[-1] and ev._warm["box"].alive
