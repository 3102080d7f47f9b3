# Two entry points on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test docs-check venv bench clean compile mutants

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# compat mode: a plain .pth path entry, no import hook (it cost ~20 ms per start-up)
	$(BIN)/python -m pip install --quiet -e '.[test]' --config-settings editable_mode=compat
	touch $(STAMP)

# Byte-compile so start-up does not recompile sources (PYTHONDONTWRITEBYTECODE may be set).
compile: $(STAMP)
	$(BIN)/python -m compileall -q b24recover

venv: $(STAMP)

demo: compile
	bash examples/demo.sh

test: compile
	$(BIN)/python -m pytest

# Every shell example of README.md, docs/*.md and --help runs as written (also part of `make test`).
docs-check: compile
	$(BIN)/python -m pytest tests/test_docs_examples.py tests/test_docs_reference.py tests/test_docs_demo.py -rs

bench: compile
	$(BIN)/python bench/run_all.py

# Mutation testing of the SPEC §5 modules (tools/mutants.py; docs/testing.md). Not part of `make test`.
# `make mutants MUTANTS="store.purge services.secrets"` runs only the modules named.
MUTANTS ?=
$(VENV)/.mutants-installed: $(STAMP)
	$(BIN)/python -c 'import mutmut' 2>/dev/null || $(BIN)/python -m pip install --quiet -e '.[test,mutants]' --config-settings editable_mode=compat
	touch $@

mutants: compile $(VENV)/.mutants-installed
	$(BIN)/python tools/mutants.py run $(MUTANTS)

clean:
	rm -rf $(VENV) demo-run mutants
