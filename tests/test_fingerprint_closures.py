"""What each stage's code fingerprint covers (stargate/fingerprint.py), pinned: the modules it hashes (its
closure) and which edits change it. Imports inside functions count; the world's programs count for the stages
whose roles run them; the tokenizer helpers (stargate/encoding) carry no backend into training; comments
and docstrings count for nothing. Edits are made in copies of the package, each with its own fingerprint
module (its own caches)."""

from __future__ import annotations

import ast
import importlib.util
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from stargate.config import load_config
from stargate.fingerprint import (
    PACKAGE_DIR,
    STAGE_ROLES,
    closure,
    code_fingerprint,
    module_path,
    package_imports,
    program_modules,
    stage_fingerprint,
    stage_module,
    stage_modules,
)

REPO = Path(__file__).resolve().parents[1]
WORLD_ROLES = load_config(REPO / "config" / "world.yaml")["roles"]
DEFAULT_ROLES = load_config(REPO / "config" / "config.yaml")["roles"]
WORLD_MODULES = {"stargate.world", "stargate.world.facts", "stargate.world.programs", "stargate.world.reading"}


def _fingerprints(
    tmp_path: Path, variants: dict[str, dict[str, Callable[[str], str]]], of: Callable
) -> dict[str, str]:
    """`of(fingerprint module)` in a copy of the package per variant, with its files (paths relative to the
    package; a missing one starts empty) passed through the variant's edit functions."""
    out = {}
    for name, edits in variants.items():
        pkg = tmp_path / name / PACKAGE_DIR.name
        shutil.copytree(PACKAGE_DIR, pkg, ignore=shutil.ignore_patterns("__pycache__"))
        for rel, edit in edits.items():
            f = pkg / rel
            f.write_text(edit(f.read_text(encoding="utf-8") if f.exists() else ""), encoding="utf-8")
        spec = importlib.util.spec_from_file_location(f"fingerprint_{name}", pkg / "fingerprint.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.PACKAGE_DIR == pkg
        out[name] = of(module)
    return out


def _sub(pattern: str, repl: str, text: str) -> str:
    new, n = re.subn(pattern, repl, text, count=1, flags=re.M)
    assert n == 1, f"{pattern!r} not found: pick another spot for this edit"
    return new


# ----------------------------------------------------------------------------- function-level imports
def _imported_only_inside_functions(module: str, target: str) -> bool:
    """`module` imports `target` (a submodule, relatively) in a function body and nowhere at its top level."""
    tree = ast.parse(module_path(module).read_text(encoding="utf-8"))
    top = {a.name for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names} | {
        n.module for n in tree.body if isinstance(n, ast.ImportFrom)
    }
    inner = {
        n.module
        for f in ast.walk(tree)
        if isinstance(f, ast.FunctionDef)
        for n in ast.walk(f)
        if isinstance(n, ast.ImportFrom)
    }
    return target in inner and target not in top


def test_function_level_imports_are_in_the_closure():
    """load_backend imports each backend inside the function, when it is chosen: still part of the stages."""
    assert _imported_only_inside_functions("stargate.backends.loading", "hf")
    assert "stargate.backends.hf" in package_imports("stargate.backends.loading")
    for stage in ("score", "simulate", "judge"):
        assert {"stargate.backends.hf", "stargate.backends.vllm_backend", "stargate.backends.scripted"} <= set(
            stage_modules(stage)
        ), stage


def test_an_edit_of_a_module_imported_inside_a_function_changes_the_fingerprint(tmp_path):
    """records.py (every stage's) imports a probe module inside a function only: editing the probe reruns
    the stages; editing that import line too; a comment in the probe does not."""
    probe_import = lambda t: _sub(r"^(def read_meta\(.*\n)", r"\1    from .fp_probe import PROBE  # noqa\n", t)  # noqa: E731
    fps = _fingerprints(
        tmp_path,
        {
            "base": {"records.py": probe_import, "fp_probe.py": lambda t: "PROBE = 1\n"},
            "probe_comment": {"records.py": probe_import, "fp_probe.py": lambda t: "# a comment\nPROBE = 1\n"},
            "probe_code": {"records.py": probe_import, "fp_probe.py": lambda t: "PROBE = 2\n"},
            "import_edit": {
                "records.py": lambda t: probe_import(t).replace("import PROBE  #", "import PROBE as P  #"),
                "fp_probe.py": lambda t: "PROBE = 1\n",
            },
        },
        lambda fp: (
            fp.code_fingerprint("stargate.stages.topk"),
            "stargate.fp_probe" in fp.closure("stargate.records"),
        ),
    )
    assert fps["base"][1], "a module imported only inside a function is missing from the closure"
    assert fps["probe_comment"][0] == fps["base"][0], "a comment in the probe changed the fingerprint"
    assert fps["probe_code"][0] != fps["base"][0], "editing a module imported inside a function reran nothing"
    assert fps["import_edit"][0] != fps["base"][0], "editing a function-level import line reran nothing"


# ----------------------------------------------------------------------------- the tokenizer helpers
def test_train_and_sft_data_carry_no_backend_code():
    """The tokenizer helpers SFT's loss mask and the prompt sets use live outside `backends`, so a backend
    edit (a comment in hf.py, a new API option) reruns neither the training data nor an offline method's
    training code. (The train stage also runs the online method, whose rollouts play the Roleplayer role
    through a backend: its closure holds them since training.method grpo exists.)"""
    assert "stargate.encoding.spans" in closure("stargate.training.masking")
    for stage in ("sft_data", "select"):
        foreign = [m for m in stage_modules(stage) if m.startswith(("stargate.backends", "stargate.api"))]
        assert not foreign, f"{stage}'s closure carries {foreign}"
    for module in ("stargate.encoding.spans", "stargate.encoding.vllm033", "stargate.prompts"):
        assert not [m for m in closure(module) if m.startswith("stargate.backends")], module


def test_importing_the_tokenizer_helpers_runs_no_backend():
    code = (
        "import sys, stargate.encoding.spans, stargate.encoding.vllm033, stargate.prompts, "
        "stargate.training.masking\n"
        "print(sorted(m for m in sys.modules if m.startswith('stargate.backends')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_no_tokenizer_module_is_left_in_backends():
    assert not (PACKAGE_DIR / "backends" / "spans.py").exists()
    assert not (PACKAGE_DIR / "backends" / "vllm033.py").exists()
    old = re.compile(r"backends\.(spans|vllm033)\b|^\s*from \.(spans|vllm033) import", re.M)
    for path in [*PACKAGE_DIR.rglob("*.py"), *(REPO / "tests").rglob("*.py"), *(REPO / "bench").rglob("*.py")]:
        if path == Path(__file__):
            continue
        text = path.read_text(encoding="utf-8")
        if path.parent.name == "encoding":
            text = text.replace("from .spans import", "").replace("from .vllm033 import", "")
        assert not old.search(text), f"{path} still names the old location"


# ----------------------------------------------------------------------------- the world's programs
def test_world_programs_are_in_the_closures_of_the_stages_running_them():
    assert {r: WORLD_ROLES[r]["options"]["program"].split(":")[0] for r in ("roleplayer", "oracle", "judge")} == {
        "roleplayer": "stargate.world",
        "oracle": "stargate.world",
        "judge": "stargate.world",
    }
    for stage in ("simulate", "oracle", "judge"):
        assert program_modules(stage, WORLD_ROLES) == ("stargate", "stargate.world")
        assert WORLD_MODULES <= set(stage_modules(stage, WORLD_ROLES)), stage
        assert stage_fingerprint(stage, WORLD_ROLES) != stage_fingerprint(stage, DEFAULT_ROLES), stage
    for stage in ("score", "topk", "sft_data", "select", "winrate_answer", "regularize", "tasks"):
        assert not [m for m in stage_modules(stage, WORLD_ROLES) if m.startswith("stargate.world")], stage
    for stage in STAGE_ROLES:
        assert not [m for m in stage_modules(stage, DEFAULT_ROLES) if m.startswith("stargate.world")], stage


def test_a_program_outside_the_package_is_left_out():
    roles = {"roleplayer": {"backend": "scripted", "options": {"program": "role_workers:busy_engine"}}}
    assert program_modules("simulate", roles) == ()
    assert program_modules("simulate", None) == ()
    assert program_modules("train", WORLD_ROLES) == ()
    # a program in a submodule: importing it runs its package's __init__ too
    roles = {"judge": {"backend": "scripted", "options": {"program": "stargate.world.programs:judge"}}}
    assert program_modules("judge", roles) == ("stargate", "stargate.world", "stargate.world.programs")


def test_a_world_edit_reruns_the_stages_running_it_and_a_docstring_edit_nothing(tmp_path):
    stages = ("simulate", "oracle", "judge", "score")
    fps = _fingerprints(
        tmp_path,
        {
            "same": {},
            "docstring": {
                "world/programs.py": lambda t: (
                    _sub(r'(^def judge\(.*\n    """)', r"\1Reworded. ", t) + "# a comment\n"
                ),
                "world/__init__.py": lambda t: _sub(r'\A"""', '"""Reworded. ', t),
            },
            "code": {"world/reading.py": lambda t: t.replace('"AI Assistant:"', '"AI assistant:"')},
        },
        lambda fp: {
            **{s: fp.stage_fingerprint(s, WORLD_ROLES) for s in stages},
            "simulate_default": fp.stage_fingerprint("simulate", DEFAULT_ROLES),
        },
    )
    assert fps["docstring"] == fps["same"], "a docstring or comment edit of the world changed a fingerprint"
    for stage in ("simulate", "oracle", "judge"):
        assert fps["code"][stage] != fps["same"][stage], f"a world edit does not rerun {stage}"
    assert fps["code"]["score"] == fps["same"]["score"], "a world edit reruns score, which runs no program"
    assert fps["code"]["simulate_default"] == fps["same"]["simulate_default"], "a world edit reruns an LLM run"


def _rule_roles() -> dict[str, set[str]]:
    """stage -> the roles its rules name (quoted role names in a rule whose code param is `code("stage")`)."""
    roles = set(DEFAULT_ROLES) | set(WORLD_ROLES)
    out: dict[str, set[str]] = {}
    for smk in (REPO / "rules").glob("*.smk"):
        text = smk.read_text(encoding="utf-8")
        for body in re.split(r"^(?=rule |use rule )", text, flags=re.M)[1:]:
            m = re.search(r'\bcode=code\("(\w+)"\)', body)
            if m:
                out.setdefault(m.group(1), set()).update(r for r in roles if f'"{r}"' in body)
    return out


def test_stage_roles_are_the_roles_the_rules_run():
    """STAGE_ROLES (the roles whose programs count for a stage) says what rules/*.smk hand each stage."""
    rules = _rule_roles()
    assert rules["simulate"] == {"questioner", "roleplayer"} and rules["judge"] == {"judge"}
    for stage, roles in rules.items():
        assert roles == set(STAGE_ROLES.get(stage, ())), stage
    for stage in STAGE_ROLES:
        assert module_path(stage_module(stage)).is_file(), stage


def test_the_rules_code_param_holds_the_world_programs():
    """rules/common.smk's `code(stage)` (every rule's code param), run with the world config, is the stage's
    fingerprint with the world's programs."""
    smk = (REPO / "rules" / "common.smk").read_text(encoding="utf-8")
    source = re.search(r"^def code\(stage\):\n.*?(?=^\S)", smk, re.S | re.M).group(0)
    for roles in (WORLD_ROLES, DEFAULT_ROLES):
        namespace = {"config": {"roles": roles}, "code_fingerprint": code_fingerprint}
        exec(source, namespace)
        for stage in ("simulate", "oracle", "judge", "score", "train"):
            assert namespace["code"](stage) == stage_fingerprint(stage, roles), stage
    assert stage_fingerprint("simulate", WORLD_ROLES) != stage_fingerprint("simulate", DEFAULT_ROLES)
