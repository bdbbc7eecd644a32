# Every target builds its own virtualenv from the project's files; nothing installed by hand is used.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test lint demo bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# The soak runs alone after the rest: its replicas and emulator would otherwise load the machine under the
# timing of the end-to-end tests running beside it.
test: lint
	$(BIN)/python -m pytest -q -n 2 -m "not soak"
	$(BIN)/python -m pytest -q -m soak

demo: $(STAMP)
	$(BIN)/python main.py demo

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis
