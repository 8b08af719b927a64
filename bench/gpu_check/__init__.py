"""`make gpu-check`: every CUDA path of the project, run in one short, capped pass on a GPU machine.

    python -m bench.gpu_check [--out DIR] [--budget 535] [--parts tests,primitives,...] [--plan]

On a machine without a usable GPU it prints one line and exits 0. On a GPU it probes the machine (device,
driver, versions), installs what is missing within the budget (machine.py), then runs each part
(parts.py: gpu tests, primitive throughput eager and compiled, pretraining throughput and MFU at 350M and
1B under ZeRO-1 and ZeRO-3, a short LRA Text run, compose proxies per hour) as its own process tree under
its own cap (runner.py), and writes gpu-check.json and gpu-check.md (report.py). docs/benchmarks.md,
"GPU check", says how to run it and read it.
"""
