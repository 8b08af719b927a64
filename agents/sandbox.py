"""Runs untrusted code (what agents write) in a child process that the caller always outlives and stops.

`run_sandboxed("pkg.mod:fn", payload, workdir, limits)` runs `python -I agents/sandbox_child.py` with
cwd=workdir, which calls fn(payload) and leaves result.json there. Around it, where the machine allows:

    unshare --net --ipc --uts --pid --mount-proc --fork --kill-child   (non-root: + --user --map-root-user)
      sh -c 'mount tmpfs on /tmp /var/tmp /dev/shm /run/lock'  (private, size-capped scratch)
        setpriv --reuid=65534 --regid=65534 --clear-groups --no-new-privs --inh-caps=-all --bounding-set=-all
          python -I -B agents/sandbox_child.py ROOT ENTRY

with rlimits (AS unless cuda, FSIZE, NPROC, CORE=0), a parent-death signal and no_new_privs set before
the exec, a clean environment, and its own session. The parent never blocks on the child: one loop reads
both pipes into bounded tails, polls the process tree's RSS and enforces the wall clock (SIGINT, then
SIGKILL). What is and is not isolated, and the fallbacks, are in docs/design.md ("Sandbox").
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import selectors
import shutil
import signal
import site
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from agents.sandbox_child import ERROR_CHARS, MEMORY_ERRORS, PAYLOAD, PR_SET_PDEATHSIG, RESULT, WARM_UP
from aira.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
CHILD = ROOT / "agents" / "sandbox_child.py"
PR_SET_NO_NEW_PRIVS = 38
SCRATCH_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")  # the world-writable places on a Debian host
# Passed through when set; everything else (API keys, tokens, AIRA_*, SLURM_*) stays with the coordinator.
ENV_KEEP = ("LANG", "LC_ALL", "LC_CTYPE", "TZ", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
            "NUMEXPR_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")
# mounts a size-capped tmpfs on each directory before `--`, then execs the rest (as root in the namespace)
_SCRATCH_SH = ('size=$1; shift; while [ "$1" != -- ]; do '
               'mount -t tmpfs -o "size=$size,mode=1777,nosuid,nodev" tmpfs "$1" || exit 125; shift; done; '
               'shift; exec "$@"')


class SandboxError(UserError):
    """The sandbox cannot be set up as asked (a path the child cannot reach, a bad workdir)."""


@dataclass
class SandboxLimits:
    wall_s: float = 600.0  # enforced from outside: SIGINT, then SIGKILL of everything after grace_s
    grace_s: float = 5.0
    memory_mb: int | None = 4096  # RLIMIT_AS for CPU runs; with cuda=True the tree's RSS is polled instead
    cuda: bool = False  # RLIMIT_AS breaks CUDA (it reserves huge virtual ranges)
    file_mb: int = 256  # RLIMIT_FSIZE, per file; also the size of each private tmpfs (/tmp, /dev/shm, ...)
    nproc: int = 64  # RLIMIT_NPROC: tasks (threads count) beyond those the uid already has; not for root
    output_bytes: int = 65536  # stdout / stderr tails kept; the rest is read and dropped, never stored
    network: bool = False  # False: a network namespace (no interface but a down loopback) where available
    drop_user: bool = True  # as root: run as `uid` with no new privileges and no capabilities
    uid: int = 65534  # nobody; give concurrent sandboxes distinct uids so their NPROC budgets are apart
    result_mb: int = 16  # result.json larger than this is refused (its JSON is parsed in the caller)
    poll_s: float = 0.2  # how often the process tree is scanned (RSS, new processes)


@dataclass
class SandboxResult:
    status: str  # ok | error (entry raised) | timeout | oom | killed (signal) | crashed (exit, no result)
    value: Any  # the JSON the entry returned (None unless ok): UNTRUSTED data
    error: str  # why it is not ok: type + message + traceback tail, or what the sandbox saw
    exit: str  # "exit code N" / "signal SIGSEGV"
    stdout_tail: str
    stderr_tail: str
    wall_s: float
    peak_rss_mb: float | None
    isolation: dict = field(default_factory=dict)  # what was applied (see _command)
    stage: str = ""  # "warm-up": the child failed before it read its payload (says the untrusted result)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def warm_up_failed(self) -> bool:
        """The entry's import or warm() failed, before the job began: a caller may retry in a new sandbox.
        Reported by the child's result.json, so a job could claim it too: retry once, not in a loop."""
        return self.status == "error" and self.stage == WARM_UP


@lru_cache(maxsize=1)
def isolation_available() -> dict:
    """What this machine lets the sandbox do (probed once per process, ~10 ms)."""
    root = sys.platform.startswith("linux") and os.geteuid() == 0
    tools = {name: shutil.which(name) for name in ("unshare", "setpriv", "mount")}
    namespaces = False
    if sys.platform.startswith("linux") and all(tools.values()):
        probe = [*_unshare_argv(root, network=False), "/bin/sh", "-c", _SCRATCH_SH, "sh", "1m", "/tmp", "--",
                 "true"]
        try:
            namespaces = subprocess.run(probe, capture_output=True, timeout=10, check=False).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            namespaces = False
    blocked = _unreachable_code(SandboxLimits.uid) if root else None
    return {"root": root, "namespaces": namespaces, "user_namespace": namespaces and not root,
            "drop_user": root and bool(tools["setpriv"]) and blocked is None, "setpriv": bool(tools["setpriv"]),
            "unshare": bool(tools["unshare"]), "drop_user_blocked": blocked}


def _unreachable_code(uid: int) -> str | None:
    """Why an unprivileged uid could not run the child here (None: it can): the project and the Python
    environment must sit under directories it may traverse. A checkout in a private folder (a 0700
    temporary directory, a 0700 home) keeps the sandbox as the caller's user, recorded in `isolation`."""
    for path in (CHILD, Path(sys.prefix)):
        for d in reversed(path.parents):
            st = os.stat(d)
            if not (st.st_mode & stat.S_IXOTH or st.st_uid == uid):
                return f"{d} (mode {stat.filemode(st.st_mode)}) keeps uid {uid} from {path}"
    return None


def run_sandboxed(entry: str, payload: dict, workdir: Path, limits: SandboxLimits | None = None,
                  readable: Sequence[Path] = (), env: Mapping[str, str] | None = None,
                  at_deadline: Callable[[], None] | None = None) -> SandboxResult:
    """Run `entry(payload)` ("package.module:function") in the sandbox; never raises for what the child does.

    workdir: the child's cwd and only writable place (created, chowned to limits.uid, mode 0700); keep
    what it must not see or change outside it, ideally next to it in a 0700 directory of the caller's.
    readable: files or directories the child reads (made o+r, never writable by it); `env`: extra variables.
    at_deadline: called when the wall clock runs out, before the child is sent SIGINT (e.g. to keep what
    the child had written by then: after the signal it may write more).
    Raises SandboxError only for a set-up the caller got wrong (e.g. a readable path nobody can reach).
    """
    return WarmSandbox(entry, workdir, limits, readable, env, payload=payload, at_deadline=at_deadline).run()


class WarmSandbox:
    """A sandbox started before its payload is known, so that its start-up (Python, the entry module's
    imports and its `warm()`: torch, CUDA) overlaps other work; `run(payload)` then costs only the job.

    The process is the one run_sandboxed starts (same isolation, limits and checks); it waits for
    payload.json in its workdir, so the caller may first put other files there (`workdir`). The wall
    clock (limits.wall_s) starts when the payload is handed over. A sandbox that is never run is ended
    by `close()` or with its caller (parent-death signal); `alive` says whether it is still waiting.
    """

    def __init__(self, entry: str, workdir: Path, limits: SandboxLimits | None = None,
                 readable: Sequence[Path] = (), env: Mapping[str, str] | None = None,
                 payload: dict | None = None, at_deadline: Callable[[], None] | None = None):
        self.limits = limits = limits or SandboxLimits()
        self.workdir = workdir = Path(workdir).absolute()
        avail = isolation_available()
        drop = limits.drop_user and avail["drop_user"]
        self.owner = (limits.uid, limits.uid) if drop else None
        _prepare_workdir(workdir, self.owner)
        if payload is not None:
            _write_payload(workdir, payload)
        if self.owner:
            _check_reachable(CHILD, limits.uid)
            for path in readable:
                _grant_read(Path(path).absolute(), workdir, limits.uid)
        child_env = _environment(workdir, env, limits.nproc)
        argv, self.isolation = _command(entry, workdir, readable, limits, avail, drop)
        self.isolation["env"] = sorted(child_env)
        up = os.stat(workdir.parent)  # can others (other sandboxes of the same uid) reach the workdir by path?
        self.isolation["workdir_parent_private"] = not up.st_mode & stat.S_IXOTH and up.st_uid != limits.uid
        self._run = _Run(limits, at_deadline)
        self._oom_kills = _oom_kills()
        self._run.start(argv, workdir, child_env, _preexec(limits, self.isolation["rlimits"]))
        self._given = payload is not None
        self._done = False

    @property
    def alive(self) -> bool:
        """Started, not run yet, and still waiting (a warm-up that failed has exited)."""
        return not self._done and not self._run._exited()

    def run(self, payload: dict | None = None) -> SandboxResult:
        """Hand over `payload` (unless it came with the constructor) and watch the job to its end."""
        if self._done:
            raise RuntimeError("this sandbox has run already: start another one")
        if not self._given:
            try:
                _write_payload(self.workdir, payload if payload is not None else {})
            except BaseException:
                self.close()
                raise
            self._run.t0 = time.monotonic()  # the job's wall clock starts now, not at the warm-up
            self._oom_kills = _oom_kills()  # nor do OOM kills of the host before it count for this job
        self._done = True
        run, limits = self._run, self.limits
        try:
            reason, status_word, rusage = run.wait()
        except BaseException:  # Ctrl-C or a bug here: the sandbox is in its own session and would run on
            run.abandon()
            raise
        result, error, error_type, stage = _read_result(self.workdir / RESULT, limits.result_mb * 2**20,
                                                        self.owner)
        self.isolation["survivors"] = run.survivors()
        status, error = _classify(reason, status_word, result, error, error_type, run, limits,
                                  _oom_kills() > self._oom_kills)
        peak = max(run.peak_rss_mb, rusage.ru_maxrss / 1024)  # the sampled tree, or the kernel's high-water mark
        value = result.get("value") if status == "ok" else None
        return SandboxResult(status, value, error, _exit_text(status_word), run.stdout.text(), run.stderr.text(),
                             round(run.wall_s, 3), round(peak, 1), self.isolation, stage)

    def close(self) -> None:
        """End a sandbox that will not be run (kill its tree, reap it)."""
        if not self._done:
            self._done = True
            self._run.abandon()


# ---------------------------------------------------------------- set-up


def _unshare_argv(root: bool, network: bool) -> list[str]:
    user = [] if root else ["--user", "--map-root-user"]  # unprivileged: a user namespace allows the rest
    net = [] if network else ["--net"]
    return ["unshare", *user, *net, "--ipc", "--uts", "--pid", "--mount-proc", "--fork", "--kill-child", "--"]


def _command(entry: str, workdir: Path, readable: Sequence[Path], limits: SandboxLimits, avail: dict,
             drop: bool) -> tuple[list[str], dict]:
    argv = [sys.executable, "-I", "-B", str(CHILD), str(ROOT), entry]
    caps = ["--no-new-privs", "--inh-caps=-all", "--bounding-set=-all"]
    if drop:
        argv = ["setpriv", f"--reuid={limits.uid}", f"--regid={limits.uid}", "--clear-groups", *caps, *argv]
        user, capabilities = str(limits.uid), "none"
    elif avail["user_namespace"] and avail["setpriv"]:
        argv = ["setpriv", *caps, *argv]  # drop the capabilities the user namespace granted inside it
        user, capabilities = str(os.getuid()), "none"
    elif avail["root"]:
        why = avail.get("drop_user_blocked") or "drop_user=False or no setpriv"
        user, capabilities = "root", f"all (root: {why})"
    else:
        user, capabilities = str(os.getuid()), "none"
    ns = avail["namespaces"]
    scratch = _scratch_dirs([workdir, *readable]) if ns else []
    if ns:
        argv = [*_unshare_argv(avail["root"], limits.network), "/bin/sh", "-c", _SCRATCH_SH, "sh",
                f"{limits.file_mb}m", *scratch, "--", *argv]
    as_mb = None if limits.cuda else limits.memory_mb
    tasks = None if user == "root" else _tasks_of(limits.uid if drop else os.getuid())
    nproc = None if tasks is None else tasks + limits.nproc
    return argv, {
        "network": "namespace" if ns and not limits.network else "none",
        "pid_namespace": ns, "mount_namespace": ns, "ipc_uts_namespaces": ns,
        "user_namespace": ns and not avail["root"],
        "user": user, "no_new_privs": True, "capabilities": capabilities,
        "private_tmp": scratch,
        "memory": ("rss_poll" if limits.cuda else "rlimit_as") if limits.memory_mb else "none",
        "rlimits": {"AS_mb": as_mb, "FSIZE_mb": limits.file_mb, "NPROC": nproc, "CORE": 0},
    }


def _scratch_dirs(used: Sequence[Path]) -> list[str]:
    # A tmpfs over a directory hides what is under it: skip those holding the workdir, the data, the
    # project or the interpreter (the child reaches its workdir through its cwd, but HOME points there).
    keep = [os.path.realpath(p) for p in [*used, ROOT, sys.prefix, sys.base_prefix, *site.getsitepackages()]]
    return [d for d in SCRATCH_DIRS if os.path.isdir(d) and not os.path.islink(d)
            and not any(k == d or k.startswith(d + "/") for k in keep)]


def _environment(workdir: Path, extra: Mapping[str, str] | None, nproc: int) -> dict[str, str]:
    env = {k: os.environ[k] for k in ENV_KEEP if k in os.environ}
    env.update(PATH=f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", HOME=str(workdir),
               TMPDIR=str(workdir), PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
    env.setdefault("LANG", "C.UTF-8")
    # OpenMP starts a thread per core: on a big node that alone would pass RLIMIT_NPROC (threads count)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    env.setdefault("OMP_NUM_THREADS", str(max(1, min(cpus, nproc // 4))))
    env.update(extra or {})
    return env


def _prctl():
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _preexec(limits: SandboxLimits, rl: dict):
    prctl = _prctl()  # looked up before the fork: the child between fork and exec should do little

    def setup() -> None:
        if rl["AS_mb"]:
            _lower(resource.RLIMIT_AS, rl["AS_mb"] * 2**20)
        _lower(resource.RLIMIT_FSIZE, limits.file_mb * 2**20)
        _lower(resource.RLIMIT_CORE, 0)
        if rl["NPROC"]:
            _lower(resource.RLIMIT_NPROC, rl["NPROC"])
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # the sandbox dies with the calling thread
            prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)

    return setup


def _lower(which: int, value: int) -> None:
    # soft = hard = value, but never above a hard limit we inherited (e.g. a worker's own memory cap):
    # only root may raise one, and the sandbox should not
    hard = resource.getrlimit(which)[1]
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(which, (value, value))


def _prepare_workdir(workdir: Path, owner: tuple[int, int] | None) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    if not stat.S_ISDIR(os.lstat(workdir).st_mode):
        raise SandboxError(f"sandbox workdir {workdir} is not a directory (a symlink?): give a new one")
    # A child that ran here before may have left links: never write or read through them as root.
    for name in (RESULT, PAYLOAD):
        path = workdir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        path.unlink(missing_ok=True)
    if owner:
        os.chown(workdir, *owner, follow_symlinks=False)
    os.chmod(workdir, 0o700)  # not a link (checked above), and only root can change its parent


def _write_payload(workdir: Path, payload: dict) -> None:
    # atomically: the child starts on the payload as soon as the name exists
    tmp = workdir / f".{PAYLOAD}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with open(fd, "w") as f:
        json.dump(payload, f)
    os.replace(tmp, workdir / PAYLOAD)


def _check_reachable(path: Path, uid: int) -> None:
    """Raise unless `uid` can reach `path`: o+x on every directory above it (listing them, o+r, is not
    needed, and a caller may withhold it on purpose, e.g. a 0711 folder whose other entries stay hidden)."""
    for d in reversed(path.parents):
        st = os.stat(d)
        if not (st.st_mode & stat.S_IXOTH or st.st_uid == uid):
            raise SandboxError(f"{path} is not reachable by the sandbox uid {uid}: {d} has mode "
                               f"{stat.filemode(st.st_mode)} (needs o+x); move it or chmod o+x {d}")


def _grant_read(path: Path, workdir: Path, uid: int) -> None:
    """Make `path` (recursively) readable by others and writable by nobody but its owner, who is not `uid`.

    Runs before the child starts, on the caller's paths: no sandboxed process can swap them meanwhile."""
    if not path.exists():
        raise SandboxError(f"readable path {path} does not exist")
    path, workdir = path.resolve(), workdir.resolve()
    inside = path == workdir or workdir in path.parents  # the child reaches these through its cwd
    if not inside:
        _check_reachable(path, uid)
    for p in [path] if path.is_file() else [path, *path.rglob("*")]:
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):
            continue
        if st.st_uid == uid and not inside:
            raise SandboxError(f"{p} belongs to the sandbox uid {uid}, so the child could change it: "
                               f"chown it to the caller")
        want = (st.st_mode | stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(st.st_mode) else 0)) & ~stat.S_IWOTH
        if stat.S_IMODE(want) != stat.S_IMODE(st.st_mode):
            os.chmod(p, stat.S_IMODE(want))


def _tasks_of(uid: int) -> int | None:
    """Threads of `uid` now (None: no /proc to count them): RLIMIT_NPROC counts them all, so the sandbox
    gets `nproc` on top."""
    if not os.path.isdir("/proc"):
        return None
    n = 0
    for d in os.scandir("/proc"):
        if not d.name.isdigit():
            continue
        try:
            with open(f"/proc/{d.name}/status") as f:
                fields = dict(line.split(":", 1) for line in f if line.startswith(("Uid", "Threads")))
        except (OSError, ValueError):
            continue
        if int(fields.get("Uid", "-1 ").split()[0]) == uid:
            n += int(fields.get("Threads", "1"))
    return n


def _oom_kills() -> int:
    try:
        with open("/proc/vmstat") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("oom_kill ")), 0)
    except OSError:
        return 0


# ---------------------------------------------------------------- running and watching


class _Tail:
    """The last `keep` bytes of a stream, and how many bytes went by."""

    def __init__(self, keep: int):
        self.keep, self.total, self.buf = keep, 0, bytearray()

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.buf += chunk[-self.keep:]
        if len(self.buf) > self.keep:
            del self.buf[: len(self.buf) - self.keep]

    def text(self) -> str:
        dropped = self.total - len(self.buf)
        head = f"[... {dropped} earlier bytes dropped]\n" if dropped else ""
        return head + self.buf.decode(errors="replace")


class _Run:
    def __init__(self, limits: SandboxLimits, at_deadline: Callable[[], None] | None = None):
        self.limits = limits
        self.at_deadline = at_deadline
        self.stdout, self.stderr = _Tail(limits.output_bytes), _Tail(limits.output_bytes)
        self.seen: dict[int, int] = {}  # pid -> start time of every process of the tree (pids get reused)
        self.peak_rss_mb = 0.0
        self.wall_s = 0.0
        self.reaped: tuple[int, Any] | None = None  # (wait status, rusage) where waitid is missing (macOS)

    def start(self, argv, workdir, env, preexec) -> None:
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                     preexec_fn=preexec)  # noqa: PLW1509 (rlimits + prctl only, no locks)
        self.sel = selectors.DefaultSelector()
        for pipe, tail in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            os.set_blocking(pipe.fileno(), False)
            self.sel.register(pipe, selectors.EVENT_READ, tail)
        # readable when the child exits: the loop wakes at once instead of at its next poll (Linux >= 5.3)
        self.pidfd = os.pidfd_open(self.proc.pid) if hasattr(os, "pidfd_open") else None
        if self.pidfd is not None:
            self.sel.register(self.pidfd, selectors.EVENT_READ, None)

    def wait(self) -> tuple[str | None, int, Any]:
        """Watch until the child exits; returns (why we stopped it or None, its wait status, its rusage)."""
        lim, reason, kill_at, next_scan = self.limits, None, None, 0.0
        deadline = self.t0 + lim.wall_s
        while not self._exited():
            wake = kill_at if kill_at is not None else deadline if reason is None else None
            self._read(lim.poll_s if wake is None else min(lim.poll_s, max(0.0, wake - time.monotonic())))
            now = time.monotonic()
            if now >= next_scan:
                rss = self._scan()
                next_scan = now + lim.poll_s
                if lim.cuda and lim.memory_mb and rss > lim.memory_mb and reason is None:
                    reason = "oom"
                    self._signal(signal.SIGKILL)
            if reason is None and now >= deadline:
                if self.at_deadline is not None:
                    self.at_deadline()  # in this thread, so surely before the signal below
                reason, kill_at = "timeout", time.monotonic() + lim.grace_s
                self._signal(signal.SIGINT)  # a Python child prints where it was
            if kill_at is not None and now >= kill_at:
                kill_at = None
                self._signal(signal.SIGKILL)
        self.wall_s = time.monotonic() - self.t0
        self._scan()
        self._signal(signal.SIGKILL)  # whatever the child left running (no-op with a pid namespace)
        self._close(drain_s=2.0)  # a process we could not reach may hold the pipes: do not wait on it
        status, rusage = self.reaped or os.wait4(self.proc.pid, 0)[1:]
        self.proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        return reason, status, rusage

    def abandon(self) -> None:
        """Kill everything and reap, for a caller that stops watching before the child ended."""
        self._signal(signal.SIGKILL)
        self._close(drain_s=0.0)
        if self.reaped is None and self.proc.returncode is None:
            self.proc.wait()

    def _close(self, drain_s: float) -> None:
        if self.pidfd is not None:
            self.sel.unregister(self.pidfd)
            os.close(self.pidfd)
            self.pidfd = None
        until = time.monotonic() + drain_s
        while self.sel.get_map() and time.monotonic() < until:
            self._read(0.1)
        self.sel.close()
        self.proc.stdout.close()
        self.proc.stderr.close()

    def _exited(self) -> bool:
        if hasattr(os, "waitid"):
            # WNOWAIT: leave it unreaped, so its pid (= the process group id) cannot be reused while we kill
            return os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        pid, status, rusage = os.wait4(self.proc.pid, os.WNOHANG)
        if pid:
            self.reaped = (status, rusage)
        return self.reaped is not None

    def _read(self, timeout: float) -> None:
        for key, _ in self.sel.select(timeout):
            if key.data is None:  # the pidfd: the loop checks the exit itself
                continue
            try:
                chunk = os.read(key.fileobj.fileno(), 1 << 16)
            except BlockingIOError:
                continue
            if chunk:
                key.data.add(chunk)
            else:
                self.sel.unregister(key.fileobj)

    def _scan(self) -> float:
        """Record the tree's processes and return its total RSS in MB (also kept as the peak)."""
        procs = _proc_table()
        children: dict[int, list[int]] = {}
        for pid, (ppid, pgid, _, _) in procs.items():
            children.setdefault(ppid, []).append(pid)
        todo = [self.proc.pid, *(p for p, v in procs.items() if v[1] == self.proc.pid)]
        total, done = 0, set()
        while todo:
            pid = todo.pop()
            if pid in done or pid not in procs:
                continue
            done.add(pid)
            self.seen[pid] = procs[pid][2]  # a pid reused inside the tree is the new process
            total += procs[pid][3]
            todo.extend(children.get(pid, ()))
        rss = total * resource.getpagesize() / 2**20
        self.peak_rss_mb = max(self.peak_rss_mb, rss)
        return rss

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        # those that left the group (setsid); pid 1 of a namespace takes all of it along
        for pid in self._alive(outside_group=True):
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def _alive(self, outside_group: bool = False) -> list[int]:
        procs = _proc_table()
        return [p for p, start in self.seen.items()
                if p in procs and procs[p][2] == start and p != self.proc.pid
                and not (outside_group and procs[p][1] == self.proc.pid) and _state(p) != "Z"]

    def survivors(self, wait_s: float = 1.0) -> int:
        """Processes of the tree still alive (not zombies) after the run, given up to wait_s to go."""
        until = time.monotonic() + wait_s
        while (alive := self._alive()) and time.monotonic() < until:
            time.sleep(0.05)
        return len(alive)


def _proc_table() -> dict[int, tuple[int, int, int, int]]:
    """pid -> (ppid, pgid, start time, rss pages) of every process, from /proc/PID/stat."""
    out: dict[int, tuple[int, int, int, int]] = {}
    if not os.path.isdir("/proc"):
        return out
    for d in os.scandir("/proc"):
        if not d.name.isdigit():
            continue
        try:
            with open(f"/proc/{d.name}/stat", "rb") as f:
                rest = f.read().rsplit(b")", 1)[1].split()  # the name may hold spaces and parentheses
        except (OSError, IndexError):
            continue
        out[int(d.name)] = (int(rest[1]), int(rest[2]), int(rest[19]), int(rest[21]))
    return out


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return "X"


# ---------------------------------------------------------------- reading back


def _read_result(path: Path, cap: int, owner: tuple[int, int] | None) -> tuple[Any, str, str, str]:
    """(value, error, error_type, stage) from result.json, written by the (untrusted) child; error "" when
    ok. value is a dict {"ok": ...} when the file was usable, else None with why in error."""
    try:  # no symlinks (to a root-only file), FIFOs (would block), hard links, or a file we did not expect
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, "", "", ""
    except OSError as e:
        return None, f"result.json refused: {e.strerror}", "SandboxError", ""
    with open(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or (owner and st.st_uid != owner[0]):
            return None, "result.json refused: not a regular file of the sandbox's own", "SandboxError", ""
        data = f.read(cap + 1)
    if len(data) > cap:
        return None, f"result.json is over {cap // 2**20} MB (SandboxLimits.result_mb)", "SandboxError", ""
    try:
        r = json.loads(data)
        ok = r["ok"]
        if ok is True:
            return r, "", "", ""
        return (None, str(r.get("error", ""))[-ERROR_CHARS:], str(r.get("error_type", ""))[:100],
                str(r.get("stage", ""))[:20])
    except Exception as e:  # noqa: BLE001 (anything a hostile file can make json do: bad UTF-8, depth, types)
        return None, f"result.json unreadable: {type(e).__name__}: {str(e)[:200]}", "SandboxError", ""


def _classify(reason, status_word, result, error, error_type, run, limits, oom_killed) -> tuple[str, str]:
    """(status, error) from why we stopped the child, how it ended and what its result.json said."""
    sig = os.WTERMSIG(status_word) if os.WIFSIGNALED(status_word) else None
    code = os.WEXITSTATUS(status_word) if os.WIFEXITED(status_word) else None
    if reason == "timeout":
        why = f"timed out after {limits.wall_s:g}s (SIGINT, then SIGKILL after {limits.grace_s:g}s)"
        return "timeout", f"{why}\n{error}"
    if reason == "oom":
        return "oom", f"out of memory: the process tree's RSS passed {limits.memory_mb} MB (killed)"
    if result is not None:
        return "ok", ""
    if error_type in MEMORY_ERRORS or "can't allocate memory" in error:
        return "oom", f"out of memory (limit {limits.memory_mb} MB)\n{error}"
    if error and error_type != "SandboxError":
        return "error", error
    near = limits.memory_mb and run.peak_rss_mb >= 0.9 * limits.memory_mb
    if sig == signal.SIGKILL and (near or oom_killed):
        return "oom", f"out of memory: SIGKILL at {run.peak_rss_mb:.0f} MB RSS (limit {limits.memory_mb} MB)"
    tail = run.stderr.text()[-2000:]
    if sig is not None:
        return "killed", f"killed by signal {signal.Signals(sig).name}\n{error}\n{tail}".strip()
    why = f"and its result was refused: {error}" if error else "without a result"
    return "crashed", f"exited with code {code} {why}\n{tail}".strip()


def _exit_text(status_word: int) -> str:
    if os.WIFSIGNALED(status_word):
        return f"signal {signal.Signals(os.WTERMSIG(status_word)).name}"
    return f"exit code {os.WEXITSTATUS(status_word)}"
