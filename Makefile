PYTHON ?= python
# the TensorFlow extra and dev; on a GPU machine: make demo EXTRAS=gpu,dev
EXTRAS ?= cpu,dev
# test processes (pytest-xdist), one test file each, the longest first (tests/conftest.py): most of a test's
# time is one thread tracing or starting Python
TEST_WORKERS ?= 2

.PHONY: install demo test bench

install:
	$(PYTHON) -m pip install -q -e ".[$(EXTRAS)]"

demo: install
	$(PYTHON) tools/run.py experiments/demo_synth_mfn_arc.py

test: install
	$(PYTHON) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=10
	TF_ENABLE_ONEDNN_OPTS=0 $(PYTHON) -m pytest -n $(TEST_WORKERS) --dist loadfile -m numeric -p no:cacheprovider

bench: install
	$(PYTHON) bench/run_all.py
