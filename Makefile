# Quick start:  `make demo` runs the demo, `make test` runs the test suite.
# Both create (or reuse) a virtual environment in .venv.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch; pinned so pip does not pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: venv test test-fast lint demo compare

venv: $(VENV)/.installed

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e '.[test]'
	touch $@

test: venv
	$(PY) -m pytest -q tests

# The quick subset while working (about a minute on 2 cores): no slow tests, no mpiexec.
test-fast: venv
	$(PY) -m pytest -q -m "not slow and not mpi" tests

# Simulated subject -> denoised volume, uncertainty, figure and metrics in results/demo/.
# DOSE is one of 1/2, 1/4, 1/10, 1/20, 1/50, 1/100 (make demo DOSE=1/100).
DOSE ?= 1/20
demo: venv
	$(PY) scripts/demo.py --out_dir results/demo --dose $(DOSE)

# Style, then the layer rule of DESIGN.md (contracts in .importlinter).
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

# The comparison of README "Robustness": simulate, train the 3D DDPM and the baselines on one CPU-sized
# budget, denoise every scanner, tracer and dose, score; tables and figures in docs/comparison/.
compare: venv
	$(PY) benchmarks/compare.py --budget cpu --extra_model ddpm3d_demo=models/demo_all_doses/model_ema.pt
