"""What the docs, profiles and CLI name exists: every rule named in a `--set-resources`/`--set-threads` line or
a profile's per-rule mapping is a rule of the workflow; every `stargate` subcommand is run by a rule or says
in its help what a person runs it for; no results path is spelled outside the path scheme; no config check
lives in a .smk file; no module is over 400 lines and no `__init__.py` holds a module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

from stargate.cli import STAGES

REPO = Path(__file__).resolve().parents[1]
SMK = sorted((REPO / "rules").glob("*.smk"))
# subcommands no rule runs: what a person runs them for (their help says it too)
BY_HAND = {"chat", "compare", "cost", "plan", "questioner-turn", "roleplayer-turn", "method-comparison"}


def rule_names() -> set[str]:
    text = "\n".join(p.read_text() for p in [REPO / "Snakefile", *SMK])
    return set(re.findall(r"^(?:local)?rule (\w+):", text, re.M)) | set(
        re.findall(r"^use rule \w+ as (\w+)", text, re.M)
    )


def test_every_rule_named_in_docs_and_profiles_exists():
    rules = rule_names()
    assert {"simulate", "train", "score", "judge"} <= rules
    named: dict[str, set[str]] = {}
    for path in [REPO / "README.md", *(REPO / "docs").glob("*.md"), *(REPO / "profiles").rglob("*.yaml")]:
        text = path.read_text()
        for m in re.finditer(r"--set-(?:resources|threads)((?:\s+[A-Za-z_]+:[A-Za-z_]+=\S+)+)", text):
            for name in re.findall(r"([A-Za-z_]+):[A-Za-z_]+=", m.group(1)):
                named.setdefault(name, set()).add(path.name)
    for path in (REPO / "profiles").rglob("config.yaml"):
        profile = yaml.safe_load(path.read_text()) or {}
        for key in ("set-resources", "set-threads"):
            for name in profile.get(key) or {}:
                named.setdefault(name, set()).add(f"{path.parent.name}/{path.name}")
    named.pop("rule", None)  # the placeholder of `--set-resources rule:key=value`
    unknown = {n: sorted(f) for n, f in named.items() if n not in rules}
    assert not unknown, f"rule names that are not rules: {unknown}"


def test_every_subcommand_is_run_by_a_rule_or_says_why_it_exists():
    shells = "\n".join(p.read_text() for p in SMK)
    run_by_rules = {name for name in STAGES if re.search(rf"\bstargate {re.escape(name)}\b", shells)}
    assert set(STAGES) - run_by_rules == BY_HAND
    for name in BY_HAND - {"chat", "compare", "cost", "plan"}:
        assert "by hand" in STAGES[name][1], f"`stargate {name}`: its help must say what it is run for"


def test_no_results_path_outside_the_path_scheme():
    offenders = []
    for path in [REPO / "Snakefile", *SMK]:
        for lineno, line in enumerate(path.read_text().splitlines(), start=1):
            code = line.split("#", 1)[0]
            if re.search(r"[\"']results/", code):
                offenders.append(f"{path.name}:{lineno}: {line.strip()}")
    assert not offenders, "spell results paths with stargate/workflow/paths.py:\n" + "\n".join(offenders)


def test_config_checks_live_in_the_package():
    for path in SMK:
        for lineno, line in enumerate(path.read_text().splitlines(), start=1):
            assert not re.match(r"\s*raise (ValueError|StargateError)", line), f"{path.name}:{lineno}: {line.strip()}"


def test_no_module_over_400_lines_and_init_files_only_hand_names_on():
    long = []
    for path in sorted((REPO / "stargate").rglob("*.py")):
        n = len(path.read_text().splitlines())
        if n > 400:
            long.append(f"{path.relative_to(REPO)}: {n}")
        if path.name == "__init__.py":
            tree = ast.parse(path.read_text())
            defs = [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))]
            assert not defs, f"{path.relative_to(REPO)} defines {defs}: move them to a named module"
    assert not long, long


def test_every_module_named_in_scripts_and_docs_exists():
    """`python -c "import stargate.training.sft"` in a setup script or a `python -m` line in a doc fails only when
    someone runs it (a CI once failed this way after a module was split): each dotted `stargate.` name there
    must be a module, or an attribute of one."""
    import importlib
    import importlib.util

    not_modules = {"stargate.head.lock", "stargate.yaml", "stargate.egg"}  # file names, not modules
    files = [REPO / "Makefile", REPO / "README.md", *(REPO / "docs").glob("*.md"), *(REPO / "scripts").rglob("*")]
    files += [*(REPO / ".ci").rglob("*"), *(REPO / "bench").rglob("*.py"), *(REPO / "profiles").rglob("*.yaml")]
    missing = []
    for path in files:
        if not path.is_file():
            continue
        for name in set(re.findall(r"\bstargate(?:\.[a-z_0-9]+)+", path.read_text(errors="replace"))):
            if name in not_modules:
                continue
            parts = name.split(".")
            for cut in range(len(parts), 0, -1):
                module = ".".join(parts[:cut])
                try:
                    found = importlib.util.find_spec(module) is not None
                except ModuleNotFoundError:  # a parent that is not a package
                    found = False
                if found:
                    obj = importlib.import_module(module)
                    rest = parts[cut:]
                    for attr in rest:
                        obj = getattr(obj, attr, None)
                    if obj is None:
                        missing.append(f"{path.relative_to(REPO)}: {name}")
                    break
            else:
                missing.append(f"{path.relative_to(REPO)}: {name}")
    assert not missing, "modules named but not in the package:\n  " + "\n  ".join(sorted(missing))


def test_every_import_in_the_package_resolves():
    """An import inside a function (`from .sft import train_sft` in a benchmark script) fails only when that
    function runs, which a lint or the fast suite may never do: every `import`/`from ... import` of the package's
    own modules, at any depth, must name a module that exists (and a name it defines, for `from X import name`
    where name is no submodule)."""
    import importlib
    import importlib.util

    pkg = REPO / "stargate"
    problems = []
    for path in sorted(pkg.rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        parts = list(rel.parts)
        package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
                if not target.startswith("stargate"):
                    continue
                if importlib.util.find_spec(target) is None:
                    problems.append(f"{rel}:{node.lineno}: no module {target}")
                    continue
                module = importlib.import_module(target)
                for alias in node.names:
                    if alias.name == "*" or hasattr(module, alias.name):
                        continue
                    if importlib.util.find_spec(f"{target}.{alias.name}") is None:
                        problems.append(f"{rel}:{node.lineno}: {target} has no {alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("stargate") and importlib.util.find_spec(alias.name) is None:
                        problems.append(f"{rel}:{node.lineno}: no module {alias.name}")
    assert not problems, "\n".join(problems)
