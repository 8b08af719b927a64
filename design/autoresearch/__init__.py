"""The adapter for a real karpathy/autoresearch checkout: `aira design autoresearch PATH [key=value ...]`.

The checkout's own prepare.py / train.py / program.md contract, driven through the search of part 2
(design/script): prepare.py and every tracked file but train.py hash-locked, each candidate run with the
checkout's command in its own sandboxed copy, the `---` summary parsed, results.tsv in the original
format, and git as a view of the journal (branch autoresearch/<name>, one commit per kept change) that
never touches the user's branch or files. docs/design.md, "The adapter for a real autoresearch
checkout", is the full account. Reading order:

    config.py       the config tree (`task: autoresearch`)
    gitops.py       git plumbing: read a checkout, write objects and one branch ref
    checkout.py     the checkout's HEAD tree, copies of it, the hash lock
    operators.py    built-in edits (design/script's plus autoresearch's constants)
    runner.py       the sandbox entries: run the command; score a saved model (trusted_eval)
    evaluate.py     trusted worker: copy, run, lock, summary, trusted score
    task.py         the Search task (design/script's ScriptTask over a checkout)
    view.py         the journal as commits and results.tsv rows
    results_tsv.py  the original results.tsv format
    run.py          set-up (cache, base copy, branch), phases, layout
    cli.py          `main(argv)`
"""
