"""Wheels to carry to a GPU machine that cannot reach a package index, prepared here where pip works.

    python -m bench.gpu_check.wheels [--out .whl] [--python-version 3.12] [--have FILE] [--dry-run]

The GPU check needs deepspeed, omegaconf and datasets, which the lent machines' image lacks (it has
torch, transformers, lightning, pytest and most of their dependencies). This resolves what those
packages need, at the versions installed in this environment (the ones the test suite ran with),
leaves out what the target already has (`--have`: one distribution name per line; the default file
is a snapshot of the image's package list), and saves one wheel of each for the target's Python on
manylinux x86-64. A distribution published only as source is built here into a wheel, and refused
unless that wheel is pure Python (a compiled one would be for this machine's Python, not the target's).

An installed package the target has is carried anyway when a requirement bounds it from above
(`fsspec<=2026.9.0`): the image's version may be too new, and pip then installs the carried one. Then,
on the GPU machine (the folder travels with `carry`):

    python3 -m bench.gpu_check --find-links .whl --no-index
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

HERE = Path(__file__).resolve().parent
IMAGE_PACKAGES = HERE / "image_packages.txt"
WANTED = ("deepspeed", "omegaconf", "datasets")  # what the parts need beyond the image (machine.PROBED)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")
PURE_TAGS = ("-py3-none-any.whl", "-py2.py3-none-any.whl")


@dataclass
class Plan:
    carry: dict[str, str] = field(default_factory=dict)  # canonical name -> version (installed here)
    skipped: dict[str, str] = field(default_factory=dict)  # canonical name -> why it is not carried


def read_have(path: Path) -> dict[str, str | None]:
    """name -> version (None: not known) from lines `name` or `name==version`."""
    have: dict[str, str | None] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            have[canonicalize_name(name)] = version.strip() or None
    return have


def target_env(python_version: str) -> dict[str, str]:
    env = default_environment()
    env.update(python_version=python_version, python_full_version=f"{python_version}.0", sys_platform="linux",
               platform_system="Linux", platform_machine="x86_64", os_name="posix",
               implementation_name="cpython", platform_python_implementation="CPython")
    return env


def satisfied_there(req: Requirement, have: dict[str, str | None]) -> bool:
    """Whether the target's own copy will do: it has one, and its version is known to fit `req` or `req`
    has no upper bound (a lower bound the image misses is rare; an upper bound a newer image breaks is not)."""
    name = canonicalize_name(req.name)
    if name not in have:
        return False
    if have[name] is not None:
        return req.specifier.contains(have[name], prereleases=True)
    return not any(s.operator in ("<", "<=", "==", "~=", "===") for s in req.specifier)


def resolve(wanted: tuple[str, ...], have: dict[str, str | None], python_version: str) -> Plan:
    """What to carry: `wanted` and, transitively, what they require that the target lacks (or may hold
    at a version that does not fit), at the versions installed here. Requirements behind extras or
    markers false on the target are not followed."""
    env, plan = target_env(python_version), Plan()
    todo = [Requirement(w) for w in wanted]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in plan.carry:
            continue
        if satisfied_there(req, have) and name not in map(canonicalize_name, wanted):
            plan.skipped.setdefault(name, "the target has it")
            continue
        plan.skipped.pop(name, None)  # a later, stricter requirement: carry it after all
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            plan.skipped[name] = "not installed here (install the project first: make setup)"
            continue
        if not req.specifier.contains(version, prereleases=True):
            plan.skipped[name] = f"installed {version} does not satisfy {req}"
            continue
        plan.carry[name] = version
        for line in metadata.requires(name) or []:
            dep = Requirement(line)
            if dep.marker is None or dep.marker.evaluate({**env, "extra": ""}):
                todo.append(dep)
    return plan


def fetch(name: str, version: str, out: Path, python_version: str) -> str:
    """One wheel of name==version into out: a binary for the target, else built here (pure Python only)."""
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    r = subprocess.run([*pip, "download", "--no-deps", "--only-binary=:all:", "--python-version", python_version,
                        "--implementation", "cp", *platforms, "-d", str(out), f"{name}=={version}"],
                       capture_output=True, text=True, check=False)
    if r.returncode == 0:
        return "downloaded"
    with tempfile.TemporaryDirectory() as tmp:
        b = subprocess.run([*pip, "wheel", "--no-deps", "-w", tmp, f"{name}=={version}"], capture_output=True,
                           text=True, check=False)
        built = list(Path(tmp).glob("*.whl"))
        if b.returncode != 0 or not built:
            raise RuntimeError(f"{name}=={version}: no wheel for the target and none could be built here:\n"
                               f"{(r.stderr + b.stderr).strip()[-800:]}")
        if not built[0].name.endswith(PURE_TAGS):
            raise RuntimeError(f"{name}=={version}: built {built[0].name}, which is compiled for this machine's "
                               "Python; the target needs its own build")
        shutil.move(built[0], out / built[0].name)  # /tmp may be another filesystem
    return "built here (pure Python)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(".whl"))
    ap.add_argument("--python-version", default="3.12", help="the target's Python (the lent machines': 3.12)")
    ap.add_argument("--have", type=Path, default=IMAGE_PACKAGES, help="distributions the target already has")
    ap.add_argument("--modules", default=",".join(WANTED), help="what to carry, with what they need")
    ap.add_argument("--dry-run", action="store_true", help="print the plan; download nothing")
    a = ap.parse_args(argv)
    plan = resolve(tuple(a.modules.split(",")), read_have(a.have), a.python_version)
    for name, why in sorted(plan.skipped.items()):
        print(f"  skip  {name}: {why}")
    if a.dry_run:
        print("\n".join(f"  carry {n}=={v}" for n, v in sorted(plan.carry.items())))
        return 0
    missing = [n for n, why in plan.skipped.items() if why != "the target has it"]
    if missing:  # a need of the target's Python that this environment does not hold: pip would fail there
        print(f"error: cannot carry {', '.join(sorted(missing))} (see above); the set would not install",
              file=sys.stderr)
        return 1
    a.out.mkdir(parents=True, exist_ok=True)
    for old in a.out.glob("*.whl"):  # a wheel of another version would be offered to pip too
        old.unlink()
    for name, version in sorted(plan.carry.items()):
        print(f"  carry {name}=={version}: {fetch(name, version, a.out, a.python_version)}", flush=True)
    size = sum(f.stat().st_size for f in a.out.glob("*.whl")) / 2**20
    print(f"{len(plan.carry)} wheels, {size:.1f} MiB in {a.out} (a device call carries 64 MiB with the tree); on the "
          f"GPU machine: python3 -m bench.gpu_check --find-links {a.out} --no-index")
    return 0


if __name__ == "__main__":
    sys.exit(main())
