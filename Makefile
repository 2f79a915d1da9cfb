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

.PHONY: install browser run test test-fast bench chaos clean

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

# Debian's Chromium for the tests that look at the report as a person would (tests/browser.py);
# installed here, beside pip's install, where it is missing and this user is root; else those tests
# skip and say why.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
	  echo "note: no Chromium and no root apt-get to install it; the browser tests skip"; \
	else date +"browser: apt-get install chromium, started %T"; \
	  { DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; } \
	  || echo "note: apt-get install chromium failed; the browser tests skip"; \
	  date +"browser: done %T"; fi

# The whole suite (CI's command): the install and Chromium side by side, then every test.
test:
	@$(MAKE) --no-print-directory -j2 install browser
	$(BIN)/python -m pytest -q --durations=25

# The loop between edits (a few minutes on an installed checkout): the unit tests and one tiny
# end-to-end run; everything marked slow (Ray Train / Tune launches, subprocess Rays) or cluster waits
# for `make test`.
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not cluster" --durations=10

# The benchmark suite (BENCHMARKS.md): bench/results/latest.json and the results in BENCHMARKS.md.
bench: install
	$(BIN)/python -m bench.run

# Faults at random moments (bench/chaos.py): workers and drivers killed, what survived counted.
chaos: install
	$(BIN)/python -m bench.chaos

clean:
	rm -rf $(VENV) build *.egg-info
