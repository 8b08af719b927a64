# Two commands for a new clone: `make demo` (install + main job) and `make test` (the test suite).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-slow test-seeds test-portability bench gpu-check gpu-wheels tabular tabular-report tabular-compare search-confirm lint clean

setup: $(STAMP)

# torch is pinned here (the CPU wheel on a CPU box, the CUDA wheel on a GPU box); pyproject keeps a range.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==$(TORCH_VERSION)
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/aira compose search configs/compose/smoke.yaml

test: setup
	$(BIN)/python -m pytest -q -n 2 tests

test-slow: setup
	$(BIN)/python -m pytest -q -m slow tests

# The learning tests (pytest -m learning) over 5 training seeds, then over torch's CPU kernel sets
# (no SIMD, AVX2, AVX512 where present) x 1 and 2 threads; tables in bench/results/learning/ (docs/testing.md).
test-seeds: setup
	$(BIN)/python bench/learning_margins.py --seeds 0,1,2,3,4

test-portability: setup
	$(BIN)/python bench/learning_margins.py --capabilities all --threads 1,2

bench: setup
	$(BIN)/python bench/primitives.py

# Every CUDA path in one capped run (docs/benchmarks.md, "GPU check"); without a GPU, one line and exit 0.
# No `setup` prerequisite: a GPU image without the venv runs it with its own python3 (installs are the
# check's own, capped). OUT=DIR puts the report there; GPU_CHECK_ARGS passes more, e.g. "--budget 600".
gpu-check:
	$(if $(wildcard $(BIN)/python),$(BIN)/python,python3) -m bench.gpu_check $(if $(OUT),--out $(OUT)) $(GPU_CHECK_ARGS)

# Wheels for a GPU machine without a package index (bench/gpu_check/wheels.py): carry .whl/ with the tree,
# then `make gpu-check GPU_CHECK_ARGS="--find-links .whl --no-index"` there.
gpu-wheels: setup
	$(BIN)/python -m bench.gpu_check.wheels --out .whl

# The tabular benchmark (docs/search.md): continue building the table (resumable; WORKERS cores), report
# what it says, compare search policies on it. TABLE=mad-3x6 by default.
TABLE ?= mad-3x6
WORKERS ?= 2
# the table tabular-report rank-correlates TABLE with (mad-3x6 and text-3x6 with each other); VS= for none
VS ?= $(if $(filter mad-3x6,$(TABLE)),text-3x6,$(if $(filter text-3x6,$(TABLE)),mad-3x6))
tabular: setup
	$(BIN)/python bench/tabular_build.py --name $(TABLE) --workers $(WORKERS)

tabular-report: setup
	$(BIN)/python bench/tabular_report.py --table $(TABLE) $(if $(VS),--vs $(VS))

tabular-compare: setup
	$(BIN)/python bench/tabular_compare.py --table $(TABLE) --parallel $(WORKERS)

# The real-training check of a policy against random search on the held-out space (hours on CPU). Its
# work dir keeps every training result, so a stopped run continues where it was when started again.
POLICY ?= greedy+surrogate+finalists
search-confirm: setup
	$(BIN)/python bench/search_efficiency.py --config configs/compose/heldout.yaml --policies random,$(POLICY) \
		--seeds 10 --evals 30 --parallel $(WORKERS) --work-dir runs/search_efficiency/heldout

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
