"""A fingerprint of the package code a stage runs, so that editing a stage reruns it and what follows.

Snakemake reruns a job when its params change. Every rule passes `code_fingerprint(<stage module>)` as
a param: a hash over the code of the stage's module and of every `stargate` module it imports,
directly or not (found statically with `ast`, so nothing is imported). Editing the judge stage changes
the judge's fingerprint only; editing a module every stage imports (e.g. records.py) changes them all.

A module's code is its parsed syntax tree written back as text (`ast.unparse`) without docstrings and
other bare string statements: comments, docstrings and formatting (blank lines, line breaks, quotes,
parentheses) change no fingerprint, so such an edit reruns nothing, while any change of a statement,
expression or constant does. (A docstring is runtime-visible as `__doc__`; the package reads it only
for `--help` texts.) The text is `ast.unparse`'s, not `ast.dump`'s, which lists every node field and so
changes whenever a Python version adds one; unparse's text can still differ between Python versions in
rare constructs, so moving a run to another Python version may rerun its stages once.

Imports are found anywhere in a file: at the top, and inside functions (`from .hf import HFBackend` in
`load_backend`, imported only when it runs). Code a stage runs by name rather than by import, a role's
`program: "module:function"` option (the learning world's users, stargate/world), is added through
`program_modules`: rules/common.smk's `code(stage)` passes it the config's roles (`stage_fingerprint` does the
same in one call), and `STAGE_ROLES` says which roles each stage runs. tests/test_fingerprint_closures.py pins
what the closures hold.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGE = PACKAGE_DIR.name


def module_path(module: str) -> Path:
    """`stargate.stages.score` -> its file (a package's `__init__.py`)."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        raise ModuleNotFoundError(f"{module} is not a module of the {PACKAGE} package")
    if len(parts) == 1:
        return PACKAGE_DIR / "__init__.py"
    rel = Path(*parts[1:])
    for cand in (PACKAGE_DIR / rel.with_suffix(".py"), PACKAGE_DIR / rel / "__init__.py"):
        if cand.is_file():
            return cand
    raise ModuleNotFoundError(f"{module} is not a module of the {PACKAGE} package")


@cache
def _tree(module: str) -> ast.Module:
    """The module's parsed source, parsed once for its imports and its code (module_code strips its bare
    strings in place: they hold no import)."""
    path = module_path(module)
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _resolve(current: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    parts = current.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _exists(module: str) -> bool:
    try:
        module_path(module)
    except ModuleNotFoundError:
        return False
    return True


@cache
def package_imports(module: str, parents: bool = True) -> frozenset[str]:
    """The `stargate` modules `module` imports anywhere in its file (top level or inside functions).

    With `parents`, also the packages whose `__init__` such an import runs (what executes); without,
    only the modules named in its import statements (the dependency graph, for the cycle check).
    """
    path = module_path(module)
    tree = _tree(module)
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            # `from pkg import mod` names the module mod; `from mod import name` names mod
            base = _resolve(module, is_package, node)
            subs = [f"{base}.{a.name}" for a in node.names if _exists(f"{base}.{a.name}")]
            names = subs if len(subs) == len(node.names) else [base, *subs]
        for name in names:
            if name == PACKAGE or name.startswith(PACKAGE + "."):
                # `from . import x` names a module x, `from .m import f` names m; keep what exists
                if _exists(name):
                    found.add(name)
    # importing a submodule runs its parent packages' __init__ too
    for name in list(found) if parents else ():
        parts = name.split(".")
        for i in range(1, len(parts)):
            if _exists(".".join(parts[:i])):  # a namespace folder has no code of its own
                found.add(".".join(parts[:i]))
    found.discard(module)
    return frozenset(found)


def closure(module: str) -> list[str]:
    """`module` and every package module it reaches through imports, sorted."""
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo.extend(package_imports(m) - seen)
    return sorted(seen)


ENTRY_POINT = f"{PACKAGE}.cli"  # runs before every stage: part of every fingerprint


def _is_bare_string(node: ast.stmt) -> bool:
    """A statement that is only a string: a docstring, or a string used as a comment (does nothing)."""
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def normalized_code(source: str | ast.Module, filename: str = "<source>") -> str:
    """`source` (or its parsed tree, changed in place) as its syntax tree written back (`ast.unparse`)
    without bare string statements (docstrings): the same text for any two sources that differ only in
    comments, docstrings or formatting."""
    tree = ast.parse(source, filename=filename) if isinstance(source, str) else source
    _strip_bare_strings(tree)
    return ast.unparse(tree)


def _strip_bare_strings(node: ast.AST) -> None:
    """Drop the bare string statements of every statement list under `node` (bodies, else and finally
    branches, except handlers, match cases; expressions hold no statements, so they are not visited)."""
    for field, value in ast.iter_fields(node):
        if not (
            isinstance(value, list) and value and isinstance(value[0], ast.stmt | ast.excepthandler | ast.match_case)
        ):
            continue
        if isinstance(value[0], ast.stmt):
            value = [s for s in value if not _is_bare_string(s)] or [ast.Pass()]  # only a docstring: `pass`
            setattr(node, field, value)
        for child in value:
            _strip_bare_strings(child)


@cache
def module_code(module: str) -> str:
    return normalized_code(_tree(module))


@cache
def code_fingerprint(module: str, *programs: str) -> str:
    """sha256 (16 hex digits) over the code (`normalized_code`) of `closure(module)`, of the closures of
    `programs` (modules the stage runs by name: `program_modules`) and of the command-line entry point."""
    h = hashlib.sha256()
    for m in fingerprinted_modules(module, *programs):
        h.update(m.encode() + b"\0" + module_code(m).encode() + b"\0")
    return h.hexdigest()[:16]


def fingerprinted_modules(module: str, *programs: str) -> list[str]:
    """The modules `code_fingerprint(module, *programs)` hashes, sorted."""
    out = set(closure(module)) | set(closure(ENTRY_POINT))
    for program in programs:
        out |= set(closure(program))
    return sorted(out)


# The roles whose backends each stage's command runs (the rules in rules/*.smk hand it their options);
# tests/test_fingerprint_closures.py checks this against the rules. A stage not named here runs no role.
STAGE_ROLES: dict[str, tuple[str, ...]] = {
    "personas": ("persona_generator",),
    "names": ("persona_generator",),
    "oracle": ("oracle",),
    "simulate": ("questioner", "roleplayer"),
    "questioner_turn": ("questioner",),
    "roleplayer_turn": ("roleplayer",),
    "score": ("scorer",),
    "turn_credit": ("scorer",),
    "regularize": ("answerer",),
    "winrate_answer": ("answerer",),
    "judge": ("judge",),
    "specificity": ("judge",),
    "audit_judge": ("judge",),
}


def program_modules(stage: str, roles: dict | None) -> tuple[str, ...]:
    """The package modules named by the `program: "module:function"` options of the roles `stage` runs
    (`roles`: the config's `roles` block), sorted. A program outside the package (a test's) is left out:
    it has no file here to hash."""
    found = set()
    for role in STAGE_ROLES.get(stage, ()):
        options = ((roles or {}).get(role) or {}).get("options") or {}
        module = str(options.get("program") or "").partition(":")[0]
        if module and _exists(module):
            parts = module.split(".")  # importing it runs its packages' __init__ too
            found.update(m for m in (".".join(parts[:i]) for i in range(1, len(parts) + 1)) if _exists(m))
    return tuple(sorted(found))


def stage_module(stage: str) -> str:
    """`score` -> `stargate.stages.score`, the module `stargate score` runs."""
    return f"{PACKAGE}.stages.{stage}"


def stage_fingerprint(stage: str, roles: dict | None = None) -> str:
    """The fingerprint of the code `stargate <stage>` runs with the config's `roles`: its module's closure and
    those of the programs its roles name (`program_modules`)."""
    return code_fingerprint(stage_module(stage), *program_modules(stage, roles))


def stage_modules(stage: str, roles: dict | None = None) -> list[str]:
    """The modules `stage_fingerprint(stage, roles)` hashes, sorted."""
    return fingerprinted_modules(stage_module(stage), *program_modules(stage, roles))
