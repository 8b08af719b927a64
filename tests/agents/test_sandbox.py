"""The sandbox against hostile programs: each run ends as a SandboxResult with the right status, and the
caller, the project, its journal and the host's processes are as they were."""

import hashlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from agents import sandbox
from agents.sandbox import SandboxError, SandboxLimits, isolation_available, run_sandboxed

H = "tests.agents.hostile"
ROOT = Path(__file__).resolve().parents[2]
AVAIL = isolation_available()
needs_drop = pytest.mark.skipif(not AVAIL["drop_user"], reason="needs root, setpriv and a checkout the sandbox uid can reach "
                                f"({AVAIL.get('drop_user_blocked')})")
needs_ns = pytest.mark.skipif(not AVAIL["namespaces"], reason="needs unshare (network/pid/mount namespaces)")
# A uid of this test run's own, so that counting its processes sees no other sandbox on the machine.
UID = 61000 + os.getpid() % 1000


def fast(**kw) -> SandboxLimits:
    return SandboxLimits(**{"wall_s": 20.0, "grace_s": 1.0, "memory_mb": 1024, **kw})


@pytest.fixture
def job(tmp_path):
    """A run directory as a coordinator keeps it: 0700, root's, with the journal beside the job's workdir."""
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    (run_dir / "journal.db").write_bytes(b"SQLite format 3\x00 precious")
    return run_dir


@pytest.fixture
def public():
    """A directory every uid can reach (pytest's tmp_path is under a 0700 directory of root's)."""
    d = Path(tempfile.mkdtemp(prefix="aira-sandbox-test-", dir="/tmp"))  # under /tmp as the jobs: not hidden
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def run(entry, payload, workdir, limits=None, **kw):
    r = run_sandboxed(f"{H}:{entry}", payload, workdir, limits or fast(), **kw)
    assert r.isolation["survivors"] == 0, r
    return r


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def processes_of(uid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and d.stat().st_uid == uid and "State:\tZ" not in (d / "status").read_text():
                out.append(int(d.name))
        except OSError:
            pass
    return out


def processes_in(workdir: Path) -> list[int]:
    """Processes whose cwd is `workdir` (the sandbox's, whatever their uid or group)."""
    out = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and os.readlink(d / "cwd") == str(workdir):
                out.append(int(d.name))
        except OSError:
            pass
    return out


def test_a_clean_entry_returns_its_value(job):
    r = run("echo", {"x": [1, 2.5, "three"]}, job / "w")
    assert r.status == "ok" and r.ok and r.error == ""
    assert r.value["payload"] == {"x": [1, 2.5, "three"]}
    assert r.exit == "exit code 0" and r.wall_s < 10 and r.peak_rss_mb > 1
    assert r.isolation["workdir_parent_private"]  # the job fixture's 0700 run directory
    assert os.path.samefile(r.value["cwd"], job / "w")
    if AVAIL["drop_user"]:
        assert r.value["uid"] == 65534 and r.isolation["user"] == "65534"
        assert r.isolation["capabilities"] == "none"
    if AVAIL["namespaces"]:
        assert r.value["pid"] == 1 and r.isolation["pid_namespace"] and r.isolation["network"] == "namespace"


def test_an_entry_that_raises_is_an_error_with_its_message(job):
    r = run("boom", {"n": 42}, job / "w")
    assert r.status == "error" and r.value is None
    assert r.error.startswith("ValueError: agent code is broken: 42")
    assert "hostile.py" in r.error and "in boom" in r.error  # the traceback's innermost frame


def test_a_result_over_its_size_limit_is_refused(job):
    r = run("echo", {"x": "a" * 2**21}, job / "w", fast(result_mb=1))
    assert r.status == "crashed" and r.value is None and "over 1 MB" in r.error


def test_a_sigkill_near_the_memory_limit_reads_as_oom():
    class Seen:  # what _Run knows after the fact
        peak_rss_mb, stderr = 950.0, sandbox._Tail(100)

    killed = signal.SIGKILL  # a wait status: killed by that signal
    limits = fast(memory_mb=1000, cuda=True)
    assert sandbox._classify(None, killed, None, "", "", Seen, limits, False)[0] == "oom"
    Seen.peak_rss_mb = 100.0
    assert sandbox._classify(None, killed, None, "", "", Seen, limits, False)[0] == "killed"
    assert sandbox._classify(None, killed, None, "", "", Seen, limits, True)[0] == "oom"  # the kernel says so


def test_the_environment_is_clean(job, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
    monkeypatch.setenv("AIRA_COORDINATOR_PID", str(os.getpid()))
    r = run("environment", {}, job / "w")
    assert r.status == "ok"
    assert not {"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AIRA_COORDINATOR_PID"} & set(r.value)
    assert not any("secret" in v for v in r.value.values())
    assert r.value["HOME"] == str(job / "w") and "PATH" in r.value
    assert set(r.value) - {"PWD"} == set(r.isolation["env"])  # PWD: the shell that mounts the private /tmp


def test_an_infinite_loop_times_out_with_its_traceback(job):
    t0 = time.monotonic()
    r = run("infinite_loop", {}, job / "w", fast(wall_s=1.0, grace_s=1.0))
    assert r.status == "timeout" and time.monotonic() - t0 < 1.0 + 1.0 + 2.0
    assert "timed out after 1s" in r.error and "KeyboardInterrupt" in r.error  # SIGINT came first
    assert "in infinite_loop" in r.stderr_tail


def test_what_the_child_wrote_by_the_deadline_is_read_before_it_is_signalled(job):
    """at_deadline runs before SIGINT: a child that writes again when signalled cannot change what was
    read at the deadline (a snapshot on a timer of its own once read the late write on a loaded box)."""
    seen = []
    state = job / "w" / "state.txt"
    r = run("rewrite_on_sigint", {}, job / "w", fast(wall_s=3.0, grace_s=2.0),
            at_deadline=lambda: seen.append(state.read_text() if state.exists() else "not written yet"))
    assert r.status == "timeout" and seen == ["early"]
    assert (job / "w" / "state.txt").read_text() == "late"  # it did write again, after


def test_a_loop_ignoring_sigint_is_killed_after_the_grace(job):
    t0 = time.monotonic()
    r = run("stubborn_loop", {}, job / "w", fast(wall_s=1.0, grace_s=1.0))
    assert r.status == "timeout" and r.exit == "signal SIGKILL"
    assert 2.0 <= time.monotonic() - t0 < 1.0 + 1.0 + 2.0


def test_a_memory_blowup_is_oom(job):
    r = run("memory_blowup", {}, job / "w", fast(memory_mb=400))
    assert r.status == "oom" and "MemoryError" in r.error and "400 MB" in r.error
    # RLIMIT_AS caps the child's address space; the peak read back may include the wrappers (unshare, sh)
    # and, where it comes from the kernel's child accounting, rounding of a few pages: a loose bound
    assert r.peak_rss_mb < 600


def test_with_cuda_memory_is_capped_by_polling_rss(job):
    r = run("memory_blowup", {"pause_s": 0.05, "max_mb": 3000}, job / "w", fast(memory_mb=300, cuda=True))
    assert r.status == "oom" and "300 MB" in r.error
    assert r.isolation["memory"] == "rss_poll" and r.isolation["rlimits"]["AS_mb"] is None
    assert 300 < r.peak_rss_mb < 2000  # overshoot: what it allocates between two polls


@needs_drop
def test_a_fork_bomb_is_bounded_and_leaves_no_process(job):
    r = run("fork_bomb", {"seconds": 1.5}, job / "w", fast(nproc=20, uid=UID))
    assert r.status == "ok", r.error
    assert r.value["refused"] > 0 and r.value["made"] <= 20
    if AVAIL["namespaces"]:
        assert r.value["visible"] <= 21  # what it could see in its pid namespace: itself and its forks
    assert processes_of(UID) == []


@needs_drop
def test_it_cannot_write_outside_its_directory_nor_delete_the_journal(job):
    journal = job / "journal.db"
    before = digest(journal)
    r = run("tamper", {"write": [str(journal), str(ROOT / "README.md")],
                       "create": [str(job / "planted.py"), str(ROOT / "planted.py"), "/etc/planted"],
                       "delete": [str(journal)]}, job / "w")
    assert r.status == "ok"
    assert all(v.startswith("denied") for v in r.value.values()), r.value
    assert digest(journal) == before
    assert not (job / "planted.py").exists() and not (ROOT / "planted.py").exists()


@needs_drop
def test_it_cannot_change_the_evaluator_files(job):
    mine = [ROOT / "agents/sandbox_child.py", ROOT / "agents/sandbox.py", ROOT / "tests/agents/hostile.py"]
    before = [digest(p) for p in mine]
    r = run("tamper", {"write": [str(p) for p in mine], "delete": [str(p) for p in mine]}, job / "w")
    assert r.status == "ok" and all(v.startswith("denied") for v in r.value.values()), r.value
    assert [digest(p) for p in mine] == before


@needs_drop
def test_it_cannot_read_a_file_only_root_may_read(job, public):
    secret = public / "hidden_test_labels.json"
    secret.write_text("[1, 0, 1]")
    secret.chmod(0o600)
    r = run("tamper", {"read": [str(secret), str(job / "journal.db")]}, job / "w")
    assert r.status == "ok"
    assert r.value[f"read {secret}"] == "denied: PermissionError: Permission denied"
    assert r.value[f"read {job / 'journal.db'}"].startswith("denied: PermissionError")


@needs_drop
def test_readable_paths_are_readable_and_stay_unchanged(job, public):
    data = public / "data"
    data.mkdir(mode=0o700)
    (data / "train.txt").write_text("1 2 3")
    (data / "train.txt").chmod(0o600)
    r = run("tamper", {"read": [str(data / "train.txt")], "write": [str(data / "train.txt")],
                       "create": [str(data / "new.txt")]}, job / "w", readable=[data])
    assert r.value[f"read {data / 'train.txt'}"] == "done: 1 2 3"
    assert r.value[f"write {data / 'train.txt'}"] == "denied: PermissionError: Permission denied"
    assert r.value[f"create {data / 'new.txt'}"].startswith("denied")
    assert (data / "train.txt").read_text() == "1 2 3" and not (data / "new.txt").exists()
    (data / "train.txt").chmod(0o600)
    r = run("tamper", {"read": [str(data / "train.txt")]}, job / "w", readable=[data / "train.txt"])
    assert r.value[f"read {data / 'train.txt'}"] == "done: 1 2 3"


@needs_drop
def test_a_readable_path_nobody_can_reach_is_a_clear_error(job):
    (job / "data.txt").write_text("x")
    with pytest.raises(SandboxError, match="needs o\\+x"):
        run_sandboxed(f"{H}:echo", {}, job / "w", fast(), readable=[job / "data.txt"])


@needs_ns
def test_a_socket_to_a_loopback_listener_fails(job):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.2)
        r = run("connect", {"port": server.getsockname()[1]}, job / "w", fast(network=False))
        assert r.status == "ok" and r.value.startswith("failed"), r.value
        assert "unreachable" in r.value
        with pytest.raises(TimeoutError):
            server.accept()
    assert r.isolation["network"] == "namespace"


def test_printing_100_mb_keeps_bounded_tails(job):
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r = run("shout", {"mb": 100}, job / "w", fast(output_bytes=4096))
    assert r.status == "ok" and r.value == 100
    assert r.stdout_tail.endswith("LAST STDOUT LINE\n") and "earlier bytes dropped" in r.stdout_tail
    dropped = int(r.stdout_tail.split()[1])
    assert dropped + len(r.stdout_tail.split("\n", 1)[1]) == 100 * 2**20 + len("LAST STDOUT LINE\n")
    assert len(r.stdout_tail) < 4096 + 100 and r.stderr_tail == "LAST STDERR LINE\n"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 50 * 1024  # KB: nothing held
    assert sum(f.stat().st_size for f in (job / "w").rglob("*")) < 2**20  # nothing kept on disk either


def test_os_exit_mid_run_is_crashed(job):
    r = run("hard_exit", {}, job / "w")
    assert r.status == "crashed" and r.exit == "exit code 3" and "exited with code 3" in r.error
    assert "about to leave" in r.stdout_tail


def test_a_segfault_is_killed_by_sigsegv(job):
    r = run("segfault", {}, job / "w")
    assert r.status == "killed" and r.exit == "signal SIGSEGV" and "SIGSEGV" in r.error


@needs_drop
def test_a_forged_result_link_is_not_followed(job, public):
    secret = public / "root_only.txt"
    secret.write_text("the hidden test labels")
    secret.chmod(0o600)
    r = run("forge_result", {"secret": str(secret)}, job / "w")
    assert r.status == "crashed" and "result.json refused" in r.error
    assert "hidden test labels" not in repr(r)


def test_a_payload_link_left_by_an_earlier_run_is_not_written_through(job, public):
    victim = public / "victim.txt"
    victim.write_text("precious")
    (job / "w").mkdir()
    (job / "w" / "payload.json").symlink_to(victim)
    r = run("echo", {"x": 1}, job / "w")
    assert r.status == "ok" and r.value["payload"] == {"x": 1} and victim.read_text() == "precious"


@needs_ns
@pytest.mark.skipif(Path("/tmp") in ROOT.parents, reason="the checkout lives under /tmp, which the child must "
                    "then see: /tmp stays the host's (recorded in isolation['private_tmp'])")
def test_tmp_is_private_when_the_job_lives_elsewhere():
    run_dir = Path(tempfile.mkdtemp(prefix="aira-sandbox-test-", dir="/var/tmp"))  # 0700, root's
    probe = f"/tmp/aira-sandbox-probe-{os.getpid()}"
    try:
        r = run("private_tmp", {"path": probe}, run_dir / "w")
    finally:
        shutil.rmtree(run_dir)
    assert r.status == "ok" and r.value == [os.path.basename(probe)]  # an empty tmpfs of its own
    assert "/tmp" in r.isolation["private_tmp"] and not os.path.exists(probe)


def test_without_namespaces_or_uid_change_it_still_contains_the_run(job, monkeypatch):
    plain = {**AVAIL, "namespaces": False, "user_namespace": False, "drop_user": False}
    monkeypatch.setattr(sandbox, "isolation_available", lambda: plain)
    r = run("echo", {}, job / "w")
    assert r.status == "ok" and r.value["pid"] != 1
    assert r.isolation["network"] == "none" and not r.isolation["pid_namespace"]
    # a process that left the group (setsid) is still found through the tree and killed
    r = run("escape_and_sleep", {}, job / "w", fast(wall_s=1.0, grace_s=0.5))
    assert r.status == "timeout" and processes_in(job / "w") == []


@needs_drop
def test_the_sandbox_dies_with_its_caller(job):
    code = (f"from agents.sandbox import run_sandboxed, SandboxLimits\n"
            f"run_sandboxed('{H}:escape_and_sleep', {{}}, {str(job / 'w')!r}, SandboxLimits(uid={UID}))\n")
    caller = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    deadline = time.monotonic() + 10
    while len(processes_of(UID)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(processes_of(UID)) == 2
    caller.send_signal(signal.SIGKILL)  # a coordinator killed -9: nothing runs run_sandboxed's clean-up
    caller.wait()
    deadline = time.monotonic() + 5
    while processes_of(UID) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_of(UID) == []


# ----------------------------------------------------------------------------- warm sandboxes


def test_a_warm_sandbox_warms_up_before_its_payload_and_its_clock_starts_with_the_job(tmp_path):
    box = sandbox.WarmSandbox("tests.agents.warmed:report", tmp_path / "w", fast(wall_s=2.0))
    time.sleep(3.0)  # longer than the job's wall clock: waiting for the payload does not count
    assert box.alive
    handed = time.time()
    (tmp_path / "w" / "note.txt").write_text("put there before the payload")
    r = box.run({"x": 1})
    assert r.ok and r.value["payload"] == {"x": 1}, r
    assert r.value["warmed_at"] < handed <= r.value["ran_at"] and r.wall_s < 2.0
    assert not box.alive and r.isolation["survivors"] == 0
    with pytest.raises(RuntimeError, match="has run already"):
        box.run({})


def test_a_warm_sandbox_that_is_never_run_is_ended_by_close(tmp_path):
    box = sandbox.WarmSandbox("tests.agents.warmed:report", tmp_path / "w", fast())
    pid = box._run.proc.pid
    box.close()
    assert not box.alive and box._run.proc.returncode is not None
    assert not Path(f"/proc/{pid}").exists()


def test_a_failed_warm_up_is_seen_before_the_job_and_reported_if_run(tmp_path):
    box = sandbox.WarmSandbox("tests.agents.warmed:report", tmp_path / "w", fast(), env={"WARM_FAIL": "1"})
    until = time.monotonic() + 20
    while box.alive and time.monotonic() < until:
        time.sleep(0.05)
    assert not box.alive  # a caller takes a fresh sandbox instead of this one
    r = box.run({})
    assert r.status == "error" and "the warm-up failed on purpose" in r.error and r.warm_up_failed
    job = sandbox.WarmSandbox("tests.agents.hostile:boom", tmp_path / "w2", fast()).run({})
    assert job.status == "error" and not job.warm_up_failed  # the job's own failure is the job's
