"""The machine the GPU check runs on: what it has (GPU, driver, versions) and the installs it may lack.

Everything that imports torch or a CUDA package runs in a child Python (`probe`), under a timeout: a
broken CUDA extension cannot hang or crash the orchestrator. Installs go through pip with a timeout each
and never build a CUDA extension from source (`--only-binary=:all:` for mamba-ssm and causal-conv1d,
whose builds take tens of minutes); a failed or slow install is a reason in the report, not an error.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.gpu_check.runner import kill_tree

ROOT = Path(__file__).resolve().parents[2]

# Modules the parts need or use, probed in the parts' Python.
PROBED = ("torch", "triton", "transformers", "deepspeed", "lightning", "omegaconf", "datasets", "pytest",
          "mamba_ssm", "causal_conv1d", "numpy")
# pip names where they differ from the module's; the version range comes from pyproject.toml when it has one.
PACKAGE = {"mamba_ssm": "mamba-ssm", "causal_conv1d": "causal-conv1d"}
# CUDA extensions: a wheel or nothing. Built from source they need nvcc and 20-60 minutes.
BINARY_ONLY = {"mamba_ssm", "causal_conv1d"}
NETWORK_ERRORS = ("NewConnectionError", "Network is unreachable", "Temporary failure in name resolution",
                  "Name or service not known", "ConnectTimeout", "Connection refused", "ProxyError",
                  "No route to host", "Failed to establish a new connection", "Max retries exceeded",
                  "connection timed out", "Read timed out")

PROBE = r"""
import importlib, json, platform, sys
out = {"python": platform.python_version(), "executable": sys.executable, "modules": {}, "errors": {}}
for name in sys.argv[1:]:
    try:
        m = importlib.import_module(name)
        out["modules"][name] = str(getattr(m, "__version__", "present"))
    except BaseException as e:  # a CUDA extension can fail with OSError, RuntimeError, even SystemExit
        out["modules"][name] = None
        out["errors"][name] = (type(e).__name__ + ": " + str(e)).splitlines()[0][:300]
try:
    import torch
    out["torch_cuda_build"] = torch.version.cuda
    out["cuda_available"] = torch.cuda.is_available()
    if out["cuda_available"]:
        p = torch.cuda.get_device_properties(0)
        out.update(device=p.name, device_count=torch.cuda.device_count(), capability=f"{p.major}.{p.minor}",
                   device_memory_gib=round(p.total_memory / 2**30, 1), cudnn=torch.backends.cudnn.version())
except BaseException as e:
    out["cuda_available"] = False
    out["torch_error"] = (type(e).__name__ + ": " + str(e)).splitlines()[0][:300]
print("PROBE " + json.dumps(out))
"""


def run_capped(argv: list[str], timeout_s: float, **kw) -> tuple[int | None, str]:
    """(exit code or None when killed at timeout_s, stdout + stderr); a timeout kills the whole tree
    (pip's build subprocesses too)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True, start_new_session=True, **kw)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        out, err = proc.communicate()
        return None, (out or "") + (err or "")
    except BaseException:  # stopped from outside (SIGTERM, Ctrl-C): take pip's tree along
        kill_tree(proc)
        raise
    return proc.returncode, out + err


def probe(python: str, modules: tuple[str, ...] = PROBED, timeout_s: float = 120) -> dict[str, Any]:
    """Versions of `modules` in `python` (None: does not import) and its torch's view of CUDA."""
    try:
        rc, text = run_capped([python, "-c", PROBE, *modules], timeout_s, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    except OSError as e:
        return {"cuda_available": False, "modules": {}, "probe_error": f"{type(e).__name__}: {e}"}
    line = next((ln for ln in text.splitlines() if ln.startswith("PROBE ")), None)
    if line is None:
        why = f"no answer within {timeout_s:.0f} s" if rc is None else f"exit {rc}"
        return {"cuda_available": False, "modules": {}, "probe_error": f"{why}: {text.strip()[-300:]}"}
    return json.loads(line[len("PROBE "):])


def nvidia_smi(timeout_s: float = 20) -> dict[str, str] | None:
    """GPU name, driver and memory as nvidia-smi reports them; None when there is no nvidia-smi or no GPU."""
    try:
        rc, text = run_capped(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                              timeout_s)
    except OSError:
        return None
    rows = [ln for ln in text.splitlines() if ln.strip() and "," in ln]
    if rc != 0 or not rows:
        return None
    name, driver, memory = ([x.strip() for x in rows[0].split(",")] + ["", "", ""])[:3]
    info = {"gpu": name, "driver": driver, "memory": memory, "count": str(len(rows))}
    try:  # the header names the highest CUDA version the driver supports
        m = re.search(r"CUDA Version:\s*([\d.]+)", run_capped(["nvidia-smi"], timeout_s)[1])
        if m:
            info["driver_cuda"] = m.group(1)
    except OSError:
        pass
    return info


def gpus_hidden(env: dict[str, str] | os._Environ = os.environ) -> bool:
    """CUDA_VISIBLE_DEVICES set to nothing (or -1) hides every GPU, whatever nvidia-smi sees."""
    v = env.get("CUDA_VISIBLE_DEVICES")
    return v is not None and v.strip() in ("", "-1")


def cuda_state(info: dict[str, Any], smi: dict[str, str] | None, hidden: bool) -> str:
    """"ready": torch runs on a GPU; "torch-without-cuda": a GPU is there but this torch cannot use it;
    "none": no usable GPU on this machine."""
    if hidden:
        return "none"
    if info.get("cuda_available"):
        return "ready"
    return "torch-without-cuda" if smi is not None else "none"


def requirement(module: str, pyproject: Path = ROOT / "pyproject.toml") -> str:
    """The pip requirement for a module: its pyproject.toml line (with the version range) or its bare name."""
    name = PACKAGE.get(module, module)
    try:
        import tomllib
    except ImportError:  # Python 3.10
        return name
    try:
        data = tomllib.loads(pyproject.read_text())
    except (OSError, ValueError):
        return name
    project = data.get("project", {})
    lines = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        lines += extra
    for line in lines:
        if re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0].lower() == name.lower():
            return line.split(";")[0].strip()
    return name


def pip_install(python: str, requirements: list[str], *, timeout_s: float, binary_only: bool = False,
                extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """pip install, killed after timeout_s; returns {ok, wall_s, reason, network} (network: the index is unreachable)."""
    argv = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--retries", "1",
            "--timeout", "15", *extra]
    if binary_only:
        argv.append("--only-binary=:all:")
    argv += requirements
    t0 = time.monotonic()
    rec: dict[str, Any] = {"requirements": requirements, "command": " ".join(["python", *argv[1:]]),
                           "binary_only": binary_only}
    try:
        rc, text = run_capped(argv, timeout_s)
    except OSError as e:
        rc, text = -1, ""
        rec.update(ok=False, network=False, reason=f"pip could not start: {e}")
    if rc is None:
        rec.update(ok=False, network=False, reason=f"pip did not finish within {timeout_s:.0f} s "
                   "(a download or a build from source): stopped, not waited for")
    elif "ok" not in rec:
        network = any(s.lower() in text.lower() for s in NETWORK_ERRORS)
        last = next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip().startswith("ERROR")), "")
        last = last or next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "")
        if rc == 0:
            rec.update(ok=True, network=False, reason="")
        elif network:
            rec.update(ok=False, network=True, reason=f"package index unreachable ({last[:200]})")
        elif binary_only and "no matching distribution" in text.lower():
            rec.update(ok=False, network=False, reason="no prebuilt wheel for this Python / torch / platform "
                       "on the index; building it from source (nvcc, 20-60 min) is not tried within the budget")
        else:
            rec.update(ok=False, network=False, reason=f"pip exit {rc}: {last[:200]}")
    rec["wall_s"] = round(time.monotonic() - t0, 1)
    return rec


def prepare(python: str, wanted: list[str], info: dict[str, Any], deadline: float, *, allow: bool = True,
            pip_args: tuple[str, ...] = (), torch_index: str | None = None, state: str = "ready",
            log=print) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, str]]:
    """Install what the machine lacks (a CUDA torch, then each wanted module that does not import).

    `pip_args` go to every pip call (--find-links DIR, --no-index). Returns the probe after installing,
    one record per attempt, and module -> reason for what is still missing. Each attempt gets at most its cap and never eats the last 60 s of the budget; once the index
    proves unreachable the remaining attempts are skipped with that reason.
    """
    attempts: list[dict[str, Any]] = []
    notes: dict[str, str] = {}
    unreachable = ""

    def left() -> float:
        return deadline - time.monotonic() - 60

    def attempt(module: str, reqs: list[str], cap: float, extra: tuple[str, ...] = (), **kw) -> bool:
        nonlocal unreachable
        if not allow:
            notes[module] = "not installed (installs are off: --no-install)"
            return False
        if unreachable:
            notes[module] = f"not installed: {unreachable}"
            return False
        if left() < 10:
            notes[module] = "not installed: no budget left for installs"
            return False
        log(f"gpu-check: installing {' '.join(reqs)} (up to {min(cap, left()):.0f} s) ...")
        rec = pip_install(python, reqs, timeout_s=min(cap, left()), extra=pip_args + extra, **kw)
        rec["module"] = module
        attempts.append(rec)
        if rec.get("network"):
            unreachable = rec["reason"]
        if not rec["ok"]:
            notes[module] = f"install failed: {rec['reason']}"
        return rec["ok"]

    if state == "torch-without-cuda":
        version = str(info.get("modules", {}).get("torch") or "").split("+")[0]
        extra: tuple[str, ...] = ("--force-reinstall",) + (("--index-url", torch_index) if torch_index else ())
        if attempt("torch", [f"torch=={version}" if version else "torch"], 240, extra=extra):
            info = probe(python)
    for module in wanted:
        if info.get("modules", {}).get(module) is not None:
            continue
        if attempt(module, [requirement(module)], 90 if module not in BINARY_ONLY else 45,
                   binary_only=module in BINARY_ONLY):
            info = probe(python)
            if info.get("modules", {}).get(module) is None:
                err = info.get("errors", {}).get(module, "does not import")
                notes[module] = f"installed but does not import: {err}"
    for module in wanted:
        if info.get("modules", {}).get(module) is None and module not in notes:
            notes[module] = info.get("errors", {}).get(module, "does not import")
    return info, attempts, notes


def versions(info: dict[str, Any], smi: dict[str, str] | None) -> dict[str, Any]:
    """The report's machine block: device, driver, CUDA, Python and package versions."""
    smi = smi or {}
    mods = info.get("modules", {})
    out = {
        "device": info.get("device") or smi.get("gpu"), "device_count": info.get("device_count") or smi.get("count"),
        "capability": info.get("capability"), "device_memory_gib": info.get("device_memory_gib"),
        "driver": smi.get("driver"), "driver_cuda": smi.get("driver_cuda"),
        "torch_cuda": info.get("torch_cuda_build"), "cudnn": info.get("cudnn"),
        "python": info.get("python") or sys.version.split()[0], "cpus": os.cpu_count(),
    }
    out.update({m: mods.get(m) for m in PROBED if m != "numpy"})
    return out
