# Two jobs for a fresh machine: `make demo` runs the pipeline end to end on the
# built-in demo data; `make test` runs the test suite. Both create (or reuse) a
# virtual environment in .venv and install the package into it, with the test
# tools and the Spark extra (the Spark table-builder tests need PySpark; Java
# comes from the system).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo
DEMO_STEPS ?= 400
# Probes see this many labelled users: labels are scarce, behaviours are not.
DEMO_LABELLED_USERS ?= 200
# Test processes (pytest-xdist). Each test file runs whole in one process, so a
# file's module fixtures are built once and the Spark tests share one session;
# two processes keep a 2-core machine busy while the other waits on a subprocess.
TEST_WORKERS ?= 2

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,spark]"
	touch $(STAMP)

# Build the demo tables, pretrain SUMN (mhop; fresh random windows per batch,
# which a 3,000-user data set needs; a 64-wide model at a higher learning rate,
# so 400 steps learn 2,000 items), write every user's vector and a
# random-encoder baseline's, then probe both for the planted traits with
# 200 labelled users (data_dumper/demo_data.py says why).
demo: $(STAMP)
	$(PY) main/build_tables.py --demo --output_dir=$(DEMO_DIR)/tables --overwrite
	$(PY) main/train.py --tables=$(DEMO_DIR)/tables --checkpoint_dir=$(DEMO_DIR)/sumn \
		--pooling=mhop --random_target_fraction=0.2 --model_dim=64 --word_emb_dim=64 \
		--mlp_layers=128 --learning_rate=0.003 --max_steps=$(DEMO_STEPS) \
		--snapshot=$(DEMO_STEPS) --log_every=100 --overwrite
	$(PY) main/inference.py --checkpoint_dir=$(DEMO_DIR)/sumn --outputs=$(DEMO_DIR)/vectors --overwrite
	$(PY) main/inference.py --checkpoint_dir=$(DEMO_DIR)/sumn --random_init \
		--outputs=$(DEMO_DIR)/random_vectors --overwrite
	$(PY) main/evaluate.py --vectors=$(DEMO_DIR)/vectors --name=sumn_mhop \
		--baseline_vectors random_encoder=$(DEMO_DIR)/random_vectors \
		--labels=$(DEMO_DIR)/tables/labels.parquet --tables=$(DEMO_DIR)/tables \
		--max_train_users=$(DEMO_LABELLED_USERS) --output_dir=$(DEMO_DIR)/evaluation

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

clean:
	rm -rf $(VENV) runs *.egg-info
