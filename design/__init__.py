"""AIRA-Design: agents write new token mixers as code; each candidate is validated and scored in a sandbox.

A candidate is one Python file defining one `models.registry.Primitive` subclass (role "sequence")
with its Config dataclass. The file may import torch, math, numpy and models (plus dataclasses,
typing and __future__ to write its Config), nothing else.

Where things live:

    design/code.py       source handling: normalised source, content hash (the dedup key), import rules
    design/validate.py   the validation battery (models.contract checks + candidate-only checks), cheap
                         to expensive, stopping at the first failure with a message for the debug operator
    design/templates.py  the offline mechanism library (softmax / linear / gated / decaying / local /
                         long-conv mixers) rendered as candidate files, and mutations / crossover over them
    design/tasks.py      design tasks: the LRA skeleton (embedding, N x [candidate + MLP], pooling, head)
                         on ListOps / Text / Retrieval, and the tiny generated task for CPU demos
    design/child.py      what runs inside the sandbox: load the file, validate, train, predict (no labels
                         of the scored splits ever enter the sandbox, so a candidate cannot fake its score)
    design/evaluate.py   the worker side: stage the data, run the child in agents.sandbox, score its
                         predictions against labels the child never saw
    design/search.py     the DesignTask the generic agents.search.Search drives (operators, payloads, metrics)
    design/cli.py        aira design run | resume | leaderboard | report | register

Agent code never runs in the coordinator nor in the trusted worker: only in agents.sandbox.
"""
