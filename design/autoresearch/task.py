"""AutoresearchTask: design/script's ScriptTask over a user's checkout.

Same nodes, keys (`<code hash>/s<run>`), incumbent chain and keep gate as the training-script task
(design/script/task.py): baseline runs of the checkout's HEAD train.py measure sigma, each candidate is an
edit of the incumbent, kept when its val_bpb is lower than the incumbent's by more than
noise.gate_sigmas x sigma (0: autoresearch's "strictly lower"). What differs: the worker
(design/autoresearch/evaluate.py runs the checkout's own command), the edits (operators.py: autoresearch's
constants too), and the metrics kept (the claim and, with trusted_eval, the trusted score).

The seed of a baseline node is only its run index: a checkout's train.py fixes its own seed, so the
noise measured is the run-to-run noise the checkout has (kernels, steps done within the time budget).
"""

from __future__ import annotations

from typing import Any

from design.autoresearch.operators import propose_edit
from design.script.task import ScriptTask

EXTRA = ("trusted_val_bpb", "trusted_eval_s", "score_source", "peak_vram_mb", "run_log_tail")


class AutoresearchTask(ScriptTask):
    target = "design.autoresearch.evaluate:evaluate"

    def metrics(self, value: dict[str, Any]) -> dict[str, Any]:
        m = super().metrics(value)
        m.update({k: value[k] for k in EXTRA if k in value})
        return m

    # ScriptTask's edit of the incumbent, over this package's operator table (autoresearch's constants included)
    edit_proposer = staticmethod(propose_edit)
