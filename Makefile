# make demo / make test work from a fresh clone: they create .venv and install everything.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-all lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: the CPU wheel; an unpinned torch would pull CUDA packages
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/mrphys demo --out demo_output --overwrite

test: install
	OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -q -m "not slow"

test-all: install
	OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

# each benchmark prints one JSON object; the reduced SPIN, relax and --quick dynamic runs take
# minutes on 2 cores (the whole dynamic table: `$(PY) benchmarks/dynamic.py`, about an hour)
bench: install
	$(PY) benchmarks/bloch.py
	$(PY) benchmarks/nufft.py
	$(PY) benchmarks/spin.py --quick
	$(PY) benchmarks/relax.py --quick
	$(PY) benchmarks/dynamic.py --quick
	$(PY) benchmarks/io.py

clean:
	rm -rf $(VENV) demo_output .pytest_cache
