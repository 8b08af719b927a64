"""AIRA-Design part 2: the fixed-time training-script task (autoresearch's loop, honest by construction).

An agent edits a whole train.py; each run trains for a fixed wall-clock budget in the sandbox and is
scored, by trusted code it never reaches, on the validation bits per byte of the model it saved; the
hidden test split ranks the finalists. docs/design.md, "Part 2", is the full account. Reading order:

    config.py          the config tree (`task: script`)
    prepare.py         trusted: corpus -> splits -> tokenizer -> staged files (hidden ones out of reach)
    harness.py         what a train.py imports (constants, batches, save_model)
    baseline_train.py  the starting train.py
    runner.py          the sandbox entries: train, infer
    evaluate.py        trusted worker: train, run A, run B, score, hash lock
    causality.py, score.py, hashlock.py, summary.py
    noise.py           sigma, the keep gate, intervals
    operators.py       built-in edits
    task.py            the Search task
    run.py             phases (calibrate, search, re-run) and the run's layout
    report.py, commands.py
"""
