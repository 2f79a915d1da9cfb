# rayfit: the two promised commands are `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
# Without an NVIDIA GPU, pin the CPU build of PyTorch (no multi-GB CUDA download).
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo yes)
CONSTRAINTS := $(if $(HAS_GPU),,-c constraints/cpu.txt)
# XGBoost's full wheel carries CUDA libraries; without a GPU its CPU-only twin does the same work.
XGBOOST := $(if $(HAS_GPU),xgboost,xgboost-cpu)
STAMP  := $(VENV)/.installed

.PHONY: install run test bench chaos clean

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml constraints/cpu.txt
	@date +"install: started %T"
	@# One resolve for everything where it all installs; otherwise the core first, then what of the
	@# optional packages installs (hpbandster builds netifaces from source and needs a C compiler).
	$(BIN)/pip install -q $(CONSTRAINTS) -e '.[dev,$(XGBOOST),catboost,search]' || { \
	  echo "note: the optional packages (hyperopt, hpbandster, GPy, catboost) did not all install; without them:"; \
	  $(BIN)/pip install -q $(CONSTRAINTS) -e '.[dev,$(XGBOOST)]' && { \
	    $(BIN)/pip install -q $(CONSTRAINTS) -e '.[dev,$(XGBOOST),catboost]' \
	      || echo "note: catboost did not install; the catboost baseline is left out and its tests skip"; \
	    $(BIN)/pip install -q $(CONSTRAINTS) -e '.[dev,$(XGBOOST),search]' \
	      || echo "note: optional search packages (hyperopt, hpbandster, GPy) did not install; their tests skip"; }; }
	@date +"install: done %T"
	touch $(STAMP)

run: install
	$(BIN)/rayfit run

test: install
	$(BIN)/python -m pytest -q --durations=40

# The benchmark suite (BENCHMARKS.md): bench/results/latest.json and the results in BENCHMARKS.md.
bench: install
	$(BIN)/python -m bench.run

# Faults at random moments (bench/chaos.py): workers and drivers killed, what survived counted.
chaos: install
	$(BIN)/python -m bench.chaos

clean:
	rm -rf $(VENV) build *.egg-info
