# Every target installs what it needs into .venv first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
HARNESS := $(VENV)/bin/harness
COMPOSE ?= infra/docker-compose.yml
TARGET ?= twin
INSTALL_HASH := $(shell cat pyproject.toml infra/ai-router/pyproject.toml 2>/dev/null | sha256sum | cut -c1-12)
STAMP := $(VENV)/.installed-$(INSTALL_HASH)

.PHONY: install run test check up down restart-gpu gpu nightly twin lint

$(STAMP):
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,twin,load,gpu]' -e infra/ai-router
	@# PyPI's torchvision/torchaudio/torchcodec break `import vllm` beside the CPU torch, and
	@# serving text needs none of them.
	$(PY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec || true
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

run: install
	$(HARNESS) run --target $(TARGET)

test: install
	@scripts/system-deps.sh
	@PY=$(PY) scripts/ci-docker.sh
	$(PY) -m pytest

check: install
	$(HARNESS) check --compose $(COMPOSE)

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy

# The production stack, one service at a time, each gated on its healthcheck.
up: install
	HARNESS=$(HARNESS) infra/stackctl.sh up $(COMPOSE)

down: install
	HARNESS=$(HARNESS) infra/stackctl.sh down $(COMPOSE)

restart-gpu: install
	HARNESS=$(HARNESS) infra/stackctl.sh restart-gpu $(COMPOSE)

gpu: install
	$(PY) -m pytest -m gpu --harness-target gpu --harness-require-gpu

twin: install
	$(HARNESS) twin build

# The running stack by default; NIGHTLY_TARGET=gpu (or twin) brings up a fresh one.
NIGHTLY_TARGET ?= attach
nightly: install
	$(HARNESS) nightly --target $(NIGHTLY_TARGET)
