# The README's two commands: `make run` and `make test`. Both bootstrap .venv on first use.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# torch first, pinned: here a CPU wheel on disk; on a GPU box the same pin brings the CUDA build.
# A plain `torch` requirement with no torch installed would pull a multi-GB CUDA build.
TORCH   ?= torch==2.13.0

.PHONY: run smoke test lint bench clean
.DEFAULT_GOAL := run

$(VENV): $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/evolve run

smoke: $(STAMP)
	$(BIN)/evolve run --config configs/smoke.yaml

# Headless Chromium (Debian's package) is part of the test set-up: one test renders the lineage page.
test: $(STAMP)
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "warning: could not install chromium; the browser test will fail"
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check common evolve learners fitness curricula tests bench
	$(BIN)/mypy
	$(BIN)/mypy bench

bench: $(STAMP)
	$(BIN)/python bench/population.py --json
	$(BIN)/python bench/probe.py --json

clean:
	rm -rf $(VENV) .evolve_cache mlflow.db mlartifacts
