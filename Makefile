# Everything a fresh machine needs (only Python and pip) is installed here.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: demo test test-fast lint test-oldest bench bench-out-of-core clean

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

## test-fast: the unit tier, under a minute: no local clusters, no subprocesses, nothing marked slow
test-fast: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -m "not slow and not cluster and not subprocess" $(PYTEST_ARGS)

## lint: ruff's pyflakes and pycodestyle checks (pyproject.toml [tool.ruff]); CI runs it
lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

# The oldest scikit-learn pyproject.toml accepts, in its own environment.
OLDEST_SKLEARN := scikit-learn==1.6.1
OLDEST := .venv-oldest

$(OLDEST)/.installed: pyproject.toml
	$(PYTHON) -m venv $(OLDEST)
	$(OLDEST)/bin/python -m pip --disable-pip-version-check -q install -e '.[test]' '$(OLDEST_SKLEARN)'
	touch $@

## test-oldest: the estimator, parity and numerics tests against the oldest supported scikit-learn (CI runs it too)
test-oldest: $(OLDEST)/.installed
	$(OLDEST)/bin/python -m pytest -q -p no:cacheprovider tests/test_estimator.py tests/test_parity.py \
		tests/test_edge_cases.py tests/test_restarts.py tests/test_model_io.py tests/test_selection.py \
		tests/test_init.py tests/test_awkward_data.py tests/test_numerics.py tests/test_bayesian.py \
		tests/test_sklearn_bayesian_suite.py

## bench: daskgmm vs scikit-learn per EM iteration (GaussianMixture, BayesianGaussianMixture), parity, Dask overhead, init cost, full passes per fit mode (tables in benchmarks/results/)
bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/compare.py
	$(BIN)/python benchmarks/parity.py
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/bayesian.py
	$(BIN)/python benchmarks/passes.py

## bench-out-of-core: EM passes over Zarr stores 5x the cluster's memory (7.5 GiB on 2 x 768 MiB, 5 GiB on 2 x 512 MiB) against a plain read pass; HDF5, Parquet and streamed predictions; the scaling terms
bench-out-of-core: $(VENV)/.installed-test
	$(BIN)/python benchmarks/out_of_core.py --gib 7.5 --workers 2 --worker-memory 768MiB
	$(BIN)/python benchmarks/out_of_core.py --gib 5 --workers 2 --worker-memory 512MiB
	$(BIN)/python benchmarks/sources.py --gib 2.5 --workers 2 --worker-memory 768MiB
	$(BIN)/python benchmarks/scaling.py

clean:
	rm -rf $(VENV) $(OLDEST) .pytest_cache
