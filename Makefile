# Two jobs for a fresh machine: `make demo` runs the pipeline end to end on the
# built-in demo data; `make test` runs the test suite. Both create (or reuse) a
# virtual environment in .venv and install the package into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) main/build_tables.py --demo --output_dir=$(DEMO_DIR)/tables --overwrite

test: $(STAMP)
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) runs *.egg-info
