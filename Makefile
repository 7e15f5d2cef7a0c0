PYTHON ?= python

.PHONY: install demo test bench

install:
	$(PYTHON) -m pip install -q -e ".[dev]"

demo: install
	$(PYTHON) tools/run.py experiments/demo_synth_mfn_arc.py

test: install
	$(PYTHON) -m pytest
	TF_ENABLE_ONEDNN_OPTS=0 $(PYTHON) -m pytest -m numeric -p no:cacheprovider

bench: install
	$(PYTHON) bench/run_all.py
