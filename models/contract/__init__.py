"""The primitive contract as library code: every property a Primitive promises, checkable on any class.

Each property is a plain function `check_<prop>(pcls, cfg=None, d_model=32)` that returns None or raises
`models.errors.ContractError` (a UserError) whose `prop` names the property and whose message gives the
numbers measured. `check_primitive(pcls)` runs them all, each within a time budget, and returns one
`CheckResult` (pass / fail / skip) per property; `primitives_in(path)` loads the primitives a single
file defines. tests/models/test_primitive_contract.py runs every check on every registered primitive;
`aira models check FILE.py` runs them on one file.

  declaration         name, Config, role, width_knobs well formed; the config passes the class's own check
  causality           in causal mode the output up to t ignores inputs after t
  mixing              a sequence mixer reads the past; a channel layer (role "channel") does not
  gradients           every parameter (and the input) gets a finite, non-zero gradient
  param_count         the formula equals the module's parameters (alone, in a layer, in a non-causal layer)
  flops               flops_per_token * tokens within 15% of torch's flop counter (skip: op it cannot see)
  cached_generation   pieces fed through `state` (prefill + single tokens, uneven) == the full forward
  determinism         same seed, same weights and outputs; no forward changes a later one
  noncausal           the non-causal layer sees the next token; a SequenceClassifier runs and trains
  cache_bytes         a non-negative int, non-decreasing in seq_len, within 2x of what `state` holds
  padding             with a padding mask (right / left, causal / non-causal) real outputs == each row alone
  classifier_padding  classifier logits of a padded batch == per-sequence logits, every pooling

These run the primitive's code in the calling process. That is fine for a developer checking their
own file (`aira models check`); design/ calls the same functions on agent-written code inside a
sandboxed subprocess, never in its coordinator.
"""

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
from models.contract.flops import EXTRA_FLOP_FORMULAS, FLOP_TOLERANCE, check_flops
from models.contract.harness import ATOL, D_MODEL, FLOP_SEQ, RTOL, SEQ, CheckSkipped
from models.contract.load import primitives_in
from models.contract.padding import check_classifier_padding, check_padding
from models.contract.run import BUDGET_S, CHECKS, CheckResult, check_primitive, run_check
from models.errors import ContractError

__all__ = [
    "ATOL", "BUDGET_S", "CHECKS", "D_MODEL", "EXTRA_FLOP_FORMULAS", "FLOP_SEQ", "FLOP_TOLERANCE", "RTOL", "SEQ",
    "CheckResult", "CheckSkipped", "ContractError", "check_cache_bytes", "check_cached_generation",
    "check_causality", "check_classifier_padding", "check_declaration", "check_determinism", "check_flops",
    "check_gradients", "check_mixing", "check_noncausal", "check_padding", "check_param_count",
    "check_primitive", "primitives_in", "run_check",
]
