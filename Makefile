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

# The import contracts (pyproject.toml [tool.importlinter]) and ruff; `make test` runs them too (tests/test_lint.py).
lint: $(VENV)/.stamp-test
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check arraymel tests benchmarks docs

bench: $(VENV)/.stamp-bench
	$(PY) -m pytest benchmarks --benchmark-enable --benchmark-only --benchmark-columns=min,median,max,rounds --benchmark-sort=name
	$(VENV)/bin/arraymel bench

# The site: docs/_build/html. Warnings are errors (-W), every reference must resolve (-n); no network.
docs: $(VENV)/.stamp-docs
	$(PY) -m sphinx -E -W --keep-going -n -q -b html docs docs/_build/html
	@touch docs/_build/html/.build-ok
	@echo "site: docs/_build/html/index.html"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .benchmarks demo.png docs/_build docs/reference/api


# --- The GPU acceptance run (docs/gpu.md). `make gpu-wheels` on a machine that reaches the package registry
# fills .whl/ with the small dependencies a bare GPU host lacks (pure Python, or manylinux for its CPython
# GPU_PYVER); `make gpu-check` on the GPU host installs them from there only when an import is missing (no
# network), puts the project on PYTHONPATH and runs benchmarks/gpu_acceptance.py with the interpreter that
# has CuPy (GPU_PYTHON), under 8 minutes.
GPU_PYTHON ?= python3
GPU_PYVER ?= 3.12
GPU_WHEELS := .whl
GPU_OUT ?= gpu-check
# soundfile needs cffi (and pycparser); keras (a peer, on JAX) needs namex and optree beyond what such hosts carry
GPU_WHEEL_NAMES := array-api-compat threadpoolctl soundfile cffi pycparser soxr keras namex optree
GPU_PLATFORMS := --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
                 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64

.PHONY: gpu-wheels gpu-check

gpu-wheels:
	$(PYTHON) -m pip download --no-deps --only-binary=:all: --python-version $(GPU_PYVER) --implementation cp \
	  $(GPU_PLATFORMS) -d $(GPU_WHEELS) $(GPU_WHEEL_NAMES)

gpu-check:
	@$(GPU_PYTHON) -c "import cupy" 2>/dev/null || { echo "gpu-check: $(GPU_PYTHON) cannot import cupy (set GPU_PYTHON=...)"; exit 1; }
	@if ! $(GPU_PYTHON) -c "import array_api_compat, threadpoolctl, soundfile, soxr" 2>/dev/null; then \
	  ls $(GPU_WHEELS)/*.whl >/dev/null 2>&1 || { echo "gpu-check: dependencies missing and no wheels in $(GPU_WHEELS)/: run make gpu-wheels on a connected machine"; exit 1; }; \
	  $(GPU_PYTHON) -m pip install -q --no-index --no-deps --no-compile --target $(GPU_WHEELS)/site $(GPU_WHEELS)/*.whl; fi
	PYTHONPATH=$(CURDIR):$(CURDIR)/$(GPU_WHEELS)/site$${PYTHONPATH:+:$$PYTHONPATH} PYTHONUNBUFFERED=1 \
	  timeout 480 $(GPU_PYTHON) benchmarks/gpu_acceptance.py --out $(GPU_OUT)
