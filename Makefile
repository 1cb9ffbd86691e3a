# polytask: make install | demo | test | bench
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench bench-speed bench-synthetic bench-census bench-weighting bench-esmm bench-dupn bench-nlp bench-vision bench-streaming clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[test,bench,report,compare,loggers,export]"
	touch $(STAMP)

demo: install
	$(BIN)/polytask demo

test: install
	$(BIN)/python -m pytest -q

bench: install bench-speed bench-synthetic bench-census bench-weighting bench-esmm bench-dupn bench-nlp bench-vision bench-streaming

bench-speed: install
	PYTHON=$(BIN)/python bash benchmarks/speed/install_peers.sh
	$(BIN)/python benchmarks/speed/run.py

bench-synthetic: install
	$(BIN)/python benchmarks/synthetic_mmoe.py

bench-census: install
	$(BIN)/python benchmarks/census.py

bench-weighting: install
	$(BIN)/python benchmarks/weighting.py
	$(BIN)/python benchmarks/weighting_cost.py

bench-nlp: install
	$(BIN)/python benchmarks/nlp.py

bench-vision: install
	$(BIN)/python benchmarks/vision.py

bench-streaming: install
	$(BIN)/python benchmarks/streaming.py

bench-esmm: install
	$(BIN)/python benchmarks/esmm.py

bench-dupn: install
	$(BIN)/python benchmarks/dupn.py
	$(BIN)/python benchmarks/dupn.py --split users --name dupn_users

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info src/*.egg-info
