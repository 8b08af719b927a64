"""`aira pipeline`: the stages chained as jobs with dependencies, resumable at any step (docs/pipeline.md).

search (compose) -> extrapolate (compose) -> pretrain each design and the baseline at each scale
(pretrain) -> lm-eval scoring (eval lm) -> scaling-law report (eval scaling), run on the local machine
or as SLURM jobs. Reading order: config.py (what a pipeline is made of), plan.py (the steps it becomes;
estimate.py their GPU-hours, show.py the dry run), step.py (how one step runs and is marked done),
local.py / submit.py (the two backends), run.py (what `aira pipeline run` and `resume` do), cli.py.
Helper steps of the plan: widths.py (designs at CPU-sized widths), tasks.py (an offline lm-eval task),
report.py (the run's one-page summary).
"""
