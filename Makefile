# qunliao — the two commands: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint pytest browser-deps bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The server distribution carries the SDK's package from sdk/src (editable too), so one
# install gives both; the SDK alone is `pip install ./sdk` (tests/e2e/test_e2e_sdk_wheel.py).
$(VENV)/.installed: pyproject.toml sdk/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

## run: set up and start the server on http://$(HOST):$(PORT) (embedded SQLite under ./qunliao-data/)
run: $(VENV)/.installed
	$(BIN)/qunliao serve --host $(HOST) --port $(PORT)

## browser-deps: Debian chromium and a CJK font for the browser tests (installed when missing)
browser-deps:
	@if ! command -v chromium >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -qi 'Noto Sans CJK'; then \
		echo "installing chromium and fonts-noto-cjk"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium fonts-noto-cjk \
		|| { echo "could not install chromium"; [ "$$CI" != true ] || exit 1; }; \
	fi

lint: $(VENV)/.installed
	$(BIN)/ruff check src sdk examples tests bench
	$(BIN)/ruff format --check src sdk examples tests bench
	$(BIN)/mypy src sdk/src examples
	$(BIN)/lint-imports

## test: set up and run the whole suite (lint, types, layers, unit, storage, api, e2e, browser)
test: $(VENV)/.installed browser-deps lint pytest

# Two runs: Playwright's sync API keeps an event loop in the main thread, which the asyncio
# tests cannot share. Exit code 5 (no tests collected) counts as a failure.
pytest: $(VENV)/.installed
	$(BIN)/python -m pytest -q -p no:cacheprovider --ignore=tests/browser; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no tests ran: failing"; exit 1; fi; [ $$rc -eq 0 ] || exit $$rc
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/browser; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no browser tests ran: failing"; exit 1; fi; exit $$rc

## bench: qunliao vs Synapse vs ejabberd (installs Synapse/ejabberd/matplotlib itself; ~20 min)
## a quick one: make bench BENCH_ARGS="--servers qunliao --workloads ws,sweep"
bench: $(VENV)/.installed
	$(BIN)/python -m bench.harness $(BENCH_ARGS)

clean:
	rm -rf $(VENV) qunliao-data .pytest_cache .mypy_cache .ruff_cache
