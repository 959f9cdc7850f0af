"""`snakemake` as run from an environment without snakemake-executor-plugin-slurm: the installed plugin
is hidden from Snakemake's plugin discovery (pkgutil) and from import. Used as a script: argv is
Snakemake's."""

from __future__ import annotations

import importlib.abc
import pkgutil
import sys

HIDDEN = "snakemake_executor_plugin_slurm"


class _Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == HIDDEN or name.startswith(HIDDEN + "."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


_iter_modules = pkgutil.iter_modules


def _visible_modules(path=None, prefix=""):
    return (m for m in _iter_modules(path, prefix) if not m.name.startswith(HIDDEN))


if __name__ == "__main__":
    sys.meta_path.insert(0, _Hide())
    pkgutil.iter_modules = _visible_modules
    from snakemake.cli import main

    sys.argv = ["snakemake", *sys.argv[1:]]
    main()
