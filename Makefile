# Two commands set everything up on a fresh machine:
#   make dev   installs the service into .venv and runs it on the embedded default (SQLite,
#              embedded Redis); it installs what the service needs, nothing for the tests
#   make test  adds the test tools, starts PostgreSQL/Redis if they are down, runs every test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SERVICE_STAMP := $(VENV)/.installed-service
TEST_STAMP := $(VENV)/.installed-test

.PHONY: dev test install lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(SERVICE_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[server]'
	touch $(SERVICE_STAMP)

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[server,test]'
	touch $(SERVICE_STAMP) $(TEST_STAMP)

install: $(TEST_STAMP)

dev: $(SERVICE_STAMP)
	$(BIN)/cloudbackup dev

test: $(TEST_STAMP)
	scripts/test

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

bench: $(TEST_STAMP)
	$(BIN)/python bench/api_start_backup.py

clean:
	rm -rf $(VENV) .cloudbackup
