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

# The demo plays the data holder: its product key (for pseudonyms and date shifts) is made once and kept
# outside the release folder; a real holder keeps it in their own key store.
DEMO_KEY := medspace-data/holder-keys/demo-product.key

$(DEMO_KEY):
	mkdir -p $(dir $(DEMO_KEY))
	$(BIN)/python -c "import secrets; print(secrets.token_hex(32))" > $(DEMO_KEY)
	chmod 600 $(DEMO_KEY)

demo: $(STAMP) $(DEMO_KEY)
	$(BIN)/medspace synth --patients 10000 --seed 42 --out medspace-data/hospital
	$(BIN)/medspace run medspace-data/hospital --workspace medspace-data --key-file $(DEMO_KEY)

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
	$(BIN)/python bench/bench_scrub.py

clean:
	rm -rf $(VENV) medspace-data
