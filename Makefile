# Two commands for a new clone: `make demo` (install + main job) and `make test` (the test suite).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-slow test-seeds test-portability bench lint clean

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

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
