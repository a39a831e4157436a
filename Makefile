# Developer entry points. `make demo` and `make test` set up .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test fast-test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the dependencies change.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e '.[dev,spark]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/medspace synth --patients 10000 --seed 42 --out medspace-data/hospital
	$(BIN)/medspace run medspace-data/hospital --workspace medspace-data

test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest

fast-test: $(STAMP)
	$(BIN)/pytest -m "not slow and not spark"

bench: $(STAMP)
	$(BIN)/python bench/bench_synth.py
	$(BIN)/python bench/bench_pipeline.py
	$(BIN)/python bench/bench_febrl.py
	$(BIN)/python bench/bench_quality.py
	$(BIN)/python bench/bench_deid.py

clean:
	rm -rf $(VENV) medspace-data
