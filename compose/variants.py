"""Named search variants, POLICY[+EXTRA...], as compose config overrides: what benchmarks compare.

    evolutionary                -> search.policy=evolutionary
    evolutionary+surrogate      -> ... + surrogate.candidates=8 (rank 8 proposals per step, compose.surrogate)
    random+finalists            -> ... + search.finalists=3 search.finalist_evals=1 (re-read the best 3)
    asha                        -> search.policy=asha rungs=[...] (the caller's fidelities)
    random+surrogate.candidates=32  -> any KEY=VALUE extra is passed on as an override

bench/tabular_compare.py (on a table) and bench/search_efficiency.py (real training) name policies
this way, so a variant means the same settings in both, and the same a user would write in a config.
A variant sets every method it does not name to off, so `random` on a config that ships a surrogate
(smoke.yaml, mad.yaml) is plain random search.
"""

from __future__ import annotations

from agents.policies import POLICIES
from aira.config import ConfigError

EXTRAS: dict[str, list[str]] = {
    "surrogate": ["surrogate.candidates=8"],
    "finalists": ["search.finalists=3", "search.finalist_evals=1"],
}
OFF = ["surrogate.candidates=0", "search.finalists=0"]  # what a variant has unless it names the extra


def variant_overrides(name: str, rungs: list[int] | None = None) -> list[str]:
    """The config overrides of a variant name; `rungs` is required by multi-fidelity policies (asha)."""
    policy, *extras = name.split("+")
    if policy not in POLICIES:
        raise ConfigError(f"variant {name!r}: unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    out = [f"search.policy={policy}", *OFF]
    if getattr(POLICIES[policy], "needs_fidelities", False):
        if not rungs:
            raise ConfigError(f"variant {name!r}: {policy} needs rungs (the budgets it climbs)")
        out.append(f"rungs=[{','.join(str(r) for r in rungs)}]")
    else:
        out.append("rungs=[]")
    for extra in extras:
        if "=" in extra:  # a raw override, e.g. random+surrogate.candidates=32
            out.append(extra)
            continue
        if extra not in EXTRAS:
            raise ConfigError(f"variant {name!r}: unknown extra {extra!r}; known: {', '.join(EXTRAS)}")
        out += EXTRAS[extra]
    return out
