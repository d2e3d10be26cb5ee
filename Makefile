# On a fresh machine: `make quickstart`, then `make test`. `make` alone lists the targets.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The tested builds; unpinned, pip would pick a newer torch of several GB.
TORCH := torch==2.14.1 torchvision==0.29.1
# The project's extras to install: `make test EXTRAS=dev,cluster` adds what runs beyond one machine.
EXTRAS ?= dev
comma := ,
# Set up once per set of extras, again only when pyproject.toml changes. Made last, so a failed install retries.
INSTALLED := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.DEFAULT_GOAL := help
.PHONY: help quickstart test lint ui bench clean distclean

help: ## list the targets
	@awk -F ':.*## ' '/^[a-z-]+:.*## / { printf "  make %-11s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

quickstart: $(INSTALLED) ## set up (first time: a few minutes), then run experiments/quickstart.json
	$(BIN)/trajectory-tracer run-experiment experiments/quickstart.json
	@echo "Report: $${TRACER_DATA_DIR:-tracer_data}/reports/quickstart/report.md. Next: make ui (the Dagster UI)," \
		"$(BIN)/trajectory-tracer list-runs, $(BIN)/trajectory-tracer export-images --experiment quickstart."

# pytest-xdist workers (in the dev extra): two use both cores of a quiet 2-core machine; on cores that
# other jobs already keep busy they gain nothing, and `make test TEST_WORKERS=0` runs in one process.
# Each worker is given whole test files, so that a file's module-scoped fixtures (e.g. one
# run-experiment read by many tests) are built once.
TEST_WORKERS ?= 2

test: lint ## set up, then ruff and the tests
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

lint: $(INSTALLED) ## ruff check
	$(BIN)/ruff check .

ui: $(INSTALLED) ## the Dagster UI on this project's instance, http://127.0.0.1:3000
	$(BIN)/trajectory-tracer ui

bench: $(INSTALLED) ## the benchmarks in benchmarks/ (about 25 minutes, see BENCHMARKS.md)
	$(BIN)/python benchmarks/pipeline.py --models tiny --seeds 8
	$(BIN)/python benchmarks/diagram_distances.py

clean: ## delete tracer_data/ (every stored run and report) and caches; keeps .venv
	rm -rf tracer_data .pytest_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean ## clean, and delete .venv
	rm -rf $(VENV)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): pyproject.toml | $(BIN)/python
	@echo "Installing $(TORCH) and the project with its extras ($(EXTRAS)) into $(VENV) (a few minutes)"
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[$(EXTRAS)]'
	touch $@
