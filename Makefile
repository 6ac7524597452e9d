# Set-up and the everyday commands. Each target creates .venv when it is missing and
# installs what it needs from the package registry; a stamp per extra set skips reinstalling.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
PYTEST_ARGS ?=

.PHONY: demo test bench lint clean docs

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

bench: $(VENV)/.stamp-bench
	$(PY) -m pytest benchmarks --benchmark-enable --benchmark-only --benchmark-columns=min,median,max,rounds --benchmark-sort=name
	$(VENV)/bin/arraymel bench

# The site: docs/_build/html. Warnings are errors (-W), every reference must resolve (-n); no network.
docs: $(VENV)/.stamp-docs
	$(PY) -m sphinx -W --keep-going -n -q -b html docs docs/_build/html
	@echo "site: docs/_build/html/index.html"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .benchmarks demo.png docs/_build docs/reference/api
