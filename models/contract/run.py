"""Running every contract check on one primitive: pass / fail / skip per property, each within a time budget."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from models.contract.checks import (
    check_cache_bytes,
    check_cached_generation,
    check_causality,
    check_declaration,
    check_determinism,
    check_gradients,
    check_mixing,
    check_noncausal,
    check_param_count,
)
from models.contract.flops import check_flops
from models.contract.harness import D_MODEL, Check, CheckSkipped
from models.contract.padding import check_classifier_padding, check_padding
from models.errors import ContractError
from models.registry import Primitive

# Property name -> check, in the order they run. "declaration" comes first: when it fails the others
# are not run (a config the primitive itself rejects would only make them fail confusingly).
CHECKS: dict[str, Check] = {fn.prop: fn for fn in (
    check_declaration, check_causality, check_mixing, check_gradients, check_param_count, check_flops,
    check_cached_generation, check_determinism, check_noncausal, check_cache_bytes, check_padding,
    check_classifier_padding,
)}

BUDGET_S = 60.0  # per check; each takes well under a second at d_model 32 on one CPU core


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one property: status "pass", "fail" or "skip" (not measurable, or not run), why
    (empty on a pass), and the wall time in seconds."""

    prop: str
    status: Literal["pass", "fail", "skip"]
    detail: str = ""
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.status == "fail"


class OverBudget(BaseException):
    """Raised by the alarm of `time_limit`; not an Exception, so that checked code's own `except Exception`
    cannot swallow it."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block with OverBudget after `seconds` (SIGALRM), where that is possible.

    Only the main thread of a process whose real-time timer nobody else uses can take the alarm;
    elsewhere the block runs to its end and `check_primitive` compares its wall time afterwards. An
    op already inside C++ finishes before the alarm is seen; a hard limit needs a separate process
    (design/ runs checks of agent-written code in one).
    """
    usable = (hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
              and signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None)
              and signal.getitimer(signal.ITIMER_REAL)[0] == 0)
    if not usable:
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise OverBudget

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def run_check(prop: str, pcls: type[Primitive], cfg: Any = None, d_model: int = D_MODEL,
              budget_s: float = BUDGET_S) -> CheckResult:
    """One property as a CheckResult: a violation, a crash of the primitive's code or an overrun is a fail."""
    if prop not in CHECKS:
        raise ValueError(f"unknown contract property {prop!r}; properties: {', '.join(CHECKS)}")
    start = time.perf_counter()
    status, detail = "pass", ""
    try:
        with time_limit(budget_s):
            CHECKS[prop](pcls, cfg, d_model)
    except ContractError as e:
        status, detail = "fail", e.detail
    except CheckSkipped as e:
        status, detail = "skip", str(e)
    except OverBudget:
        status, detail = "fail", f"stopped after {time.perf_counter() - start:.1f} s, over the {budget_s:g} s budget"
    except Exception as e:  # noqa: BLE001  (the primitive's own code raised: a finding, not a checker crash)
        status, detail = "fail", _first_line(e)
    seconds = time.perf_counter() - start
    if status == "pass" and seconds > budget_s:
        status, detail = "fail", f"took {seconds:.1f} s, over the {budget_s:g} s budget"
    return CheckResult(prop, status, detail, seconds)


def check_primitive(pcls: type[Primitive], cfg: Any = None, d_model: int = D_MODEL,
                    budget_s: float = BUDGET_S) -> list[CheckResult]:
    """Every contract property of `pcls` at `d_model` with `cfg` (default: its Config defaults).

    One CheckResult per entry of CHECKS, in order; none raises for a broken primitive. Runs the
    primitive's code in this process: callers checking untrusted code run this in a sandbox.
    """
    first = run_check("declaration", pcls, cfg, d_model, budget_s)
    if first.failed:
        return [first] + [CheckResult(p, "skip", "not run: the declaration check failed") for p in CHECKS if
                          p != "declaration"]
    return [first] + [run_check(p, pcls, cfg, d_model, budget_s) for p in CHECKS if p != "declaration"]
