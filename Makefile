# Set-up and the everyday commands. Each target creates .venv when it is missing and
# installs what it needs from the package registry; a stamp per extra set skips reinstalling.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
PYTEST_ARGS ?=

.PHONY: demo test bench lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.stamp-%: pyproject.toml | $(PY)
	$(PIP) install --quiet -e ".[$*]"
	@touch $@

demo: $(VENV)/.stamp-plot,scipy
	$(VENV)/bin/arraymel demo --out demo.png

test: $(VENV)/.stamp-test
	$(PY) -m pytest $(PYTEST_ARGS)

# The import contracts (pyproject.toml [tool.importlinter]) and ruff; `make test` runs them too (tests/test_lint.py).
lint: $(VENV)/.stamp-test
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check arraymel tests benchmarks

bench: $(VENV)/.stamp-bench
	$(PY) -m pytest benchmarks --benchmark-enable --benchmark-only --benchmark-columns=min,median,max,rounds --benchmark-sort=name
	$(VENV)/bin/arraymel bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .benchmarks demo.png
