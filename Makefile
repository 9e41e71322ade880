# expctl: `make demo` runs the examples on one machine; `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit integration kube-apiserver bench bench-apply clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# the CPU build of PyTorch first, pinned: an unpinned torch would pull several GB of CUDA packages
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[test,train]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts training
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

kube-apiserver:
	bash scripts/build-kube-apiserver.sh

test: $(STAMP) kube-apiserver
	bash scripts/test-prereqs.sh
	$(MAKE) lint typecheck
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/plan_scale.py

bench-apply: $(STAMP) kube-apiserver
	$(BIN)/python benchmarks/apply_scale.py

clean:
	rm -rf $(VENV) .expctl .mypy_cache .ruff_cache .pytest_cache
