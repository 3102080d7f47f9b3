# Two entry points on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test venv bench clean compile

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

bench: compile
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) demo-run
