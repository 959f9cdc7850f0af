"""`--profile slurm` where the `snakemake` that runs has no snakemake-executor-plugin-slurm: Snakemake
stops before reading any project file, with the text docs/slurm.md quotes, and scripts/install-profiles.sh
(the one-time setup step) names the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .workflow import REPO, env

NO_PLUGIN = Path(__file__).with_name("no_slurm_plugin.py")
SNAKEMAKE_SAYS = "argument --executor/-e: invalid choice: 'slurm'"


def fake_snakemake(tmp: Path) -> Path:
    """A `snakemake` on PATH from an environment without the SLURM plugin."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    (bin_dir / "snakemake").write_text(f'#!/bin/sh\nexec {sys.executable} {NO_PLUGIN} "$@"\n')
    (bin_dir / "snakemake").chmod(0o755)
    return bin_dir


def install_profiles(tmp: Path, path_first: Path | None = None) -> subprocess.CompletedProcess:
    e = env(tmp, XDG_CONFIG_HOME=str(tmp / "xdg"))
    if path_first:
        e["PATH"] = f"{path_first}:{e['PATH']}"
    return subprocess.run(
        ["bash", str(REPO / "scripts/install-profiles.sh")], capture_output=True, text=True, env=e, timeout=120
    )


def test_snakemake_without_the_plugin_stops_with_the_text_the_docs_quote(tmp_path):
    r = subprocess.run(
        [sys.executable, str(NO_PLUGIN), "-n", "--profile", "profiles/slurm"],
        cwd=REPO, capture_output=True, text=True, env=env(tmp_path), timeout=120,
    )  # fmt: skip
    assert r.returncode != 0 and SNAKEMAKE_SAYS in r.stderr, r.stderr[-2000:]
    assert SNAKEMAKE_SAYS in (REPO / "docs/slurm.md").read_text()


def test_install_profiles_names_the_missing_plugin_and_the_fix(tmp_path):
    r = install_profiles(tmp_path / "without", fake_snakemake(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "snakemake-executor-plugin-slurm is not installed in its environment" in r.stderr, r.stderr
    assert "pip install snakemake-executor-plugin-slurm" in r.stderr
    r = install_profiles(tmp_path / "with")  # the project's environment: the plugin is there
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    assert (tmp_path / "with" / "xdg" / "snakemake" / "slurm" / "config.yaml").exists()
