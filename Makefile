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

## The most complete job that exists today: every system's samples through its mappings,
## then one department batch with broken records, to show envelopes and errors side by side.
demo: install
	$(BIN)/jghub mappings test
	-$(BIN)/jghub mappings run eco-env-penalty \
		mappings/systems/eco-env-penalty/samples/case_batch/invalid-records.xml --type case_batch

## Lint, type-check and every test.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest
