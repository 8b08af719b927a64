"""Hidden metrics: keys starting with `test_` come from a hidden test split that agents never see.

A task journals them beside its validation metrics; the coordinator strips them, at any depth, from
every node a policy or an operator is shown (agents.search.visible); only the final ranking reads them.
The hidden twin of a validation metric is named by this module too (val_bpb -> test_bpb).
"""

from __future__ import annotations

from typing import Any

HIDDEN_PREFIX = "test_"


def is_hidden(key: Any) -> bool:
    """True for a metric name an agent must not see."""
    return str(key).startswith(HIDDEN_PREFIX)


def hidden_metric(metric: str) -> str:
    """The hidden-test twin of a validation metric: val_bpb -> test_bpb, mad_error -> test_mad_error."""
    return HIDDEN_PREFIX + metric.removeprefix("val_")


def strip_hidden(value: Any) -> Any:
    """`value` without hidden keys in any dict inside it (lists and nested dicts included, e.g. ladder rungs)."""
    if isinstance(value, dict):
        return {k: strip_hidden(v) for k, v in value.items() if not is_hidden(k)}
    if isinstance(value, list):
        return [strip_hidden(v) for v in value]
    return value
