# The two commands: `make demo` and `make test`. Both bootstrap .venv from pinned dependencies.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Where torch comes from. Empty: the default index (on these machines pip takes the local CPU
# wheel). Elsewhere, to avoid a multi-GB CUDA build: make TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
PYTEST_ARGS ?=
# Test processes (pytest-xdist); 0 runs the suite in this process. Each one starts its own Prefect
# API and loads the embedding model (~1.5 GB of memory each). Three on two cores: many tests wait on
# servers and child processes, and a third process fills those waits (measured: 579 s -> 550 s).
PYTEST_WORKERS ?= 3

.PHONY: demo check test bench lock clean openapi

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet pip==26.3
	$(BIN)/python -m pip install --quiet -c requirements.lock $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) torch==2.13.0
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/flywheel demo

# Lint and format, the import contracts, the types (README, "Checks"). mypy and import-linter read a
# linked tree of the installed layout (tests/installed_tree.py): they cannot follow the package-dir mapping.
check: $(STAMP)
	$(BIN)/ruff check
	$(BIN)/ruff format --check
	$(BIN)/python tests/installed_tree.py .checks_tree
	cd .checks_tree && ../$(BIN)/lint-imports ../pyproject.toml
	$(BIN)/mypy

# The checks run beside the tests, not before them: the suite leaves part of the two cores idle
# (waits on servers and child processes), which mypy fills. Their output (.check.log) is printed
# after the tests', and either failing fails `make test`.
test: $(STAMP)
	@echo "make check runs beside the tests; its output follows theirs (.check.log)"
	@echo "$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)"
	@$(MAKE) --no-print-directory check > .check.log 2>&1 & checking=$$!; \
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS); tested=$$?; \
	wait $$checking; checked=$$?; \
	echo "--- make check"; cat .check.log; \
	if [ $$checked -ne 0 ]; then echo "make check failed (above)"; fi; \
	[ $$tested -eq 0 ] && [ $$checked -eq 0 ]

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all

# The service's OpenAPI document, checked in for teams generating clients (tests compare it to the service).
openapi: $(STAMP)
	$(BIN)/python -m flywheel.app.serve.openapi_doc docs/openapi.json

lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | sed 's/+cpu$$//' > requirements.lock.new
	{ echo "# Full resolved dependency set, used as pip constraints by the Makefile (pyproject.toml pins the direct ones)."; \
	  echo "# Regenerate: make lock"; cat requirements.lock.new; } > requirements.lock && rm requirements.lock.new

clean:
	rm -rf $(VENV) .pytest_cache .checks_tree .mypy_cache .ruff_cache
