# Two commands a fresh machine needs: `make demo` and `make test`.
# Each creates .venv on first use and installs the project with pinned torch (CPU build on a CPU machine).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo study test test-slow bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/prorl demo

study: $(VENV)/.installed
	$(VENV)/bin/prorl demo --study

test: $(VENV)/.installed
	$(PY) -m pytest

test-slow: $(VENV)/.installed
	$(PY) -m pytest -m slow

clean:
	rm -rf $(VENV) build dist src/*.egg-info
