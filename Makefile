# q2c: `make up` runs the whole stack on this machine; `make test` runs the test suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up test install worker webhook clean-state help bench browser tls-proxy

help:
	@echo "make up    - start Temporal (UI :8233), CRM/PSA/ERP sandboxes, worker, webhook; run the demo"
	@echo "make test  - ruff, then the test suite (real Temporal servers, real HTTP)"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

up: $(STAMP)
	$(BIN)/python -m stack.up

# The console's browser test drives Debian's headless Chromium through chromedriver.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)

# The Temporal mTLS test puts Debian's nginx (a TLS-terminating gRPC proxy) in front of the dev server.
tls-proxy:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light)

# ruff first (lint, import order, format): CI fails on it. Then the suite: the long runs
# (marker `slow`) in a second process beside the rest, so the two share the wall time; their
# output follows the main run's, and either one failing fails `make test`.
test: $(STAMP) browser tls-proxy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@mkdir -p .state
	@$(BIN)/python -m pytest -q -s -m slow > .state/slow-tests.log 2>&1 & slow=$$!; \
	$(BIN)/python -m pytest -q -m "not slow" --durations=15; fast=$$?; \
	wait $$slow; slowrc=$$?; echo "--- slow tests (pytest -m slow) ---"; grep -v "WARN" .state/slow-tests.log | tail -n 30; \
	test $$fast -eq 0 && test $$slowrc -eq 0

worker: $(STAMP)
	$(BIN)/python -m q2c.worker

webhook: $(STAMP)
	$(BIN)/python -m q2c.webhook.app

bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

clean-state:
	rm -rf .state
