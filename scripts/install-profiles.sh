#!/usr/bin/env bash
# Make the repository's Snakemake profiles resolvable by bare name:
#
#   scripts/install-profiles.sh            # then, from the repo root:  snakemake --profile slurm
#
# Why: `snakemake --profile NAME` looks for a folder NAME only in the current directory,
# $XDG_CONFIG_HOME/snakemake (default ~/.config/snakemake) and /etc/xdg/snakemake, never in
# ./profiles/. This script symlinks profiles/slurm and profiles/local-gpu of THIS checkout into the
# user folder (or, with --system, into /etc/xdg/snakemake for every user of the machine).
# `--profile profiles/slurm` works without this step. profiles/default needs no install: Snakemake
# applies it automatically as the workflow profile.
#
# Options:
#   --system      install into the system folder ($XDG_CONFIG_DIRS' first entry, default /etc/xdg)
#   --force       replace an existing profile of the same name (a folder is moved aside to NAME.bak.<time>)
#   --uninstall   remove the links this script made (links that point into this checkout only)
#   --dry-run     print what would be done
#
# The links point at this checkout: edits to profiles/slurm/config.yaml take effect at once, and
# running the script from another checkout (with --force) switches the name to that checkout.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PROFILES=(slurm local-gpu)
scope=user force=0 uninstall=0 dry=0
for arg in "$@"; do
  case "$arg" in
    --system) scope=system ;;
    --force) force=1 ;;
    --uninstall) uninstall=1 ;;
    --dry-run) dry=1 ;;
    -h | --help) sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install-profiles: unknown option '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

# The same folders as Snakemake's platformdirs.AppDirs("snakemake") on Linux.
if [ "$scope" = system ]; then
  first_dir="${XDG_CONFIG_DIRS:-/etc/xdg}"
  first_dir="${first_dir%%:*}"
  DEST="${first_dir:-/etc/xdg}/snakemake"
else
  DEST="${XDG_CONFIG_HOME:-$HOME/.config}/snakemake"
fi

run() { if [ "$dry" = 1 ]; then echo "+ $*"; else "$@"; fi; }

if [ "$uninstall" = 1 ]; then
  for name in "${PROFILES[@]}"; do
    link="$DEST/$name"
    if [ -L "$link" ] && [ "$(readlink "$link")" = "$REPO/profiles/$name" ]; then
      run rm "$link"
      echo "removed $link"
    fi
  done
  exit 0
fi

run mkdir -p "$DEST"
status=0
for name in "${PROFILES[@]}"; do
  src="$REPO/profiles/$name"
  link="$DEST/$name"
  [ -f "$src/config.yaml" ] || { echo "install-profiles: $src/config.yaml missing" >&2; exit 1; }
  if [ -L "$link" ] && [ "$(readlink "$link")" = "$src" ]; then
    echo "ok       $link -> $src (already installed)"
    continue
  fi
  if [ -e "$link" ] || [ -L "$link" ]; then
    if [ "$force" != 1 ]; then
      echo "skipped  $link exists ($(readlink "$link" 2>/dev/null || echo 'not a link to this checkout'));" \
        "rerun with --force to replace it" >&2
      status=1
      continue
    fi
    if [ -L "$link" ]; then
      run rm "$link"
    else
      run mv "$link" "$link.bak.$(date +%Y%m%d%H%M%S)"
    fi
  fi
  run ln -s "$src" "$link"
  echo "linked   $link -> $src"
done

# `--profile slurm` needs snakemake-executor-plugin-slurm in the environment of the `snakemake` that runs
# it; without it Snakemake stops before reading any project file, with its usage text and "argument
# --executor/-e: invalid choice: 'slurm'". Say so now, with the fix. (`--version` exits right after
# the executor choice is checked; the plugin's import asks `scontrol`, a few seconds without a controller.)
snakemake_bin="$(command -v snakemake || true)"
if [ -z "$snakemake_bin" ]; then
  echo "warning: no 'snakemake' on PATH: activate this project's environment (pip install -e . brings" \
    "snakemake and snakemake-executor-plugin-slurm) before 'snakemake --profile slurm'" >&2
elif ! (cd "${TMPDIR:-/tmp}" && "$snakemake_bin" --executor slurm --version) >/dev/null 2>&1; then
  echo "warning: $snakemake_bin cannot run --profile slurm: snakemake-executor-plugin-slurm is not" \
    "installed in its environment (Snakemake would stop with \"argument --executor/-e: invalid choice:" \
    "'slurm'\"). Fix: pip install snakemake-executor-plugin-slurm into that environment, or activate" \
    "this checkout's environment (pip install -e . brings it)" >&2
fi

[ "$status" = 0 ] && echo "done: from $REPO run e.g. 'snakemake -n --profile slurm'"
exit "$status"
