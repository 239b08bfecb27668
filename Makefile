# Everything a fresh machine needs (only Python and pip) is installed here.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: demo test bench bench-out-of-core clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[plot]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[test]'
	touch $@

## demo: fit a synthetic mixture on a local Dask cluster, print the model and timings
demo: $(VENV)/.installed-run
	$(BIN)/daskgmm demo $(DEMO_ARGS)

## test: the whole test suite
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## bench: daskgmm vs scikit-learn per EM iteration, parity, Dask overhead and init cost (tables in benchmarks/results/)
bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/compare.py
	$(BIN)/python benchmarks/parity.py
	$(BIN)/python benchmarks/overhead.py

## bench-out-of-core: a 10 GiB Zarr fit on 2 workers x 1 GiB, plus the scaling terms
bench-out-of-core: $(VENV)/.installed-test
	$(BIN)/python benchmarks/out_of_core.py --gib 10 --workers 2 --worker-memory 1GiB
	$(BIN)/python benchmarks/scaling.py

clean:
	rm -rf $(VENV) .pytest_cache
