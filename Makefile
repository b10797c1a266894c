# q2c: `make up` runs the whole stack on this machine; `make test` runs the test suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up test install worker webhook clean-state help bench browser

help:
	@echo "make up    - start Temporal (UI :8233), CRM/PSA/ERP sandboxes, worker, webhook; run the demo"
	@echo "make test  - run the test suite (real Temporal servers, real HTTP)"

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

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

worker: $(STAMP)
	$(BIN)/python worker.py

webhook: $(STAMP)
	$(BIN)/python -m starter.webhook

bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

clean-state:
	rm -rf .state
