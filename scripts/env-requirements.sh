#!/usr/bin/env bash
# Print the `pip:` section of a conda environment file (envs/*.yaml), one pip requirement line each: what conda
# hands to pip when it creates the environment. scripts/setup-vllm.sh and scripts/check-envs.sh install these
# lines into a venv (no conda needed). Relative paths (`-e ..`) are relative to envs/, as for conda: run pip
# from that folder. The format read is the one the files in envs/ use: `  - pip:` then `      - <line>` items.
set -euo pipefail
awk '
  /^[[:space:]]*-[[:space:]]+pip:[[:space:]]*$/ { on = 1; indent = index($0, "-"); next }
  on && /^[[:space:]]*#/ { next }
  on && /^[[:space:]]*-[[:space:]]/ {
    if (index($0, "-") <= indent) { on = 0; next }
    sub(/^[[:space:]]*-[[:space:]]+/, ""); sub(/[[:space:]]+#.*$/, ""); print; next
  }
  on && NF { on = 0 }
' "$1"
