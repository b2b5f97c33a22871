# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test perf clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: $(STAMP)
	$(PY) -m edgekit.demo --output demo-out

test: $(STAMP)
	$(PY) -m pytest -q

perf: $(STAMP)
	$(PY) -m pytest tests/perf --benchmark-only --benchmark-enable -q

clean:
	rm -rf $(VENV) demo-out edgekit-out .pytest_cache .benchmarks
