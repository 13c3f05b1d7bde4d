# The two commands of the README: `make demo` (main job) and `make test` (test suite).
# Both create .venv when it is missing and (re)install the package when pyproject.toml changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.automot-installed

.PHONY: test demo install lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# The suite runs in TEST_WORKERS processes (pytest-xdist), each test file in one worker so its
# module fixtures are built once; `make test TEST_WORKERS=0` runs it in this process.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

demo: $(STAMP)
	$(BIN)/automot demo

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/automot bench refiner --json

clean:
	rm -rf $(VENV) .pytest_cache
