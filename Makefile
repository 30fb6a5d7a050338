# Two entry points a newcomer needs; both build .venv from the repo's own files.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint install

$(BIN)/jghub: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

install: $(BIN)/jghub

## The main job: the hub, its worker and simulators of every connected system on the embedded
## bus (no RabbitMQ, no configuration), through a day of traffic; prints what happened per system.
demo: install
	$(BIN)/jghub demo

## Lint, type-check and every test.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest
