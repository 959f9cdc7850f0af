"""The package's shape: no import cycles, and every rule finds its stage in one hop."""

import importlib.util
import re
import shutil
from pathlib import Path

from stargate.cli import STAGES
from stargate.fingerprint import PACKAGE_DIR, closure, code_fingerprint, package_imports

REPO = Path(__file__).resolve().parents[1]


def _modules() -> list[str]:
    out = []
    for path in PACKAGE_DIR.rglob("*.py"):
        rel = path.relative_to(PACKAGE_DIR.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append(".".join(parts))
    return sorted(out)


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_package_has_no_import_cycles():
    graph = {m: set(package_imports(m, parents=False)) for m in _modules()}
    assert _find_cycle(graph) is None, f"import cycle: {' -> '.join(_find_cycle(graph))}"


def test_every_rule_names_its_stage_module():
    """`rule X` runs `stargate X-with-dashes`, whose module is stargate/stages/X.py (one hop)."""
    rules = {}
    for smk in (REPO / "rules").glob("*.smk"):
        for name, body in re.findall(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", smk.read_text(), re.S | re.M):
            rules[name] = body
    assert len(rules) >= 17  # + score_control, a `use rule` of score
    for name, body in rules.items():
        m = re.search(r'"stargate ([a-z-]+) ', body)
        if m is None:  # a rule without a stage command (e.g. an aggregating local rule)
            continue
        stage = m.group(1)
        module, _ = STAGES[stage]
        assert module == f"stargate.stages.{stage.replace('-', '_')}"
        assert name == stage.replace("-", "_") or name.startswith(stage.replace("-", "_") + "_"), (name, stage)
        assert f'code_fingerprint("{stage.replace("-", "_")}")' in body or "code=" in body, (
            f"rule {name} has no code param"
        )


def _edited_fingerprints(tmp_path: Path, edits: dict) -> dict[str, str]:
    """code_fingerprint of the topk stage in copies of the package, each with stargate/records.py (imported
    by every stage) passed through one edit function; a fresh fingerprint module per copy (its own caches)."""
    out = {}
    for name, edit in edits.items():
        pkg = tmp_path / name / PACKAGE_DIR.name
        shutil.copytree(PACKAGE_DIR, pkg, ignore=shutil.ignore_patterns("__pycache__"))
        records = pkg / "records.py"
        records.write_text(edit(records.read_text(encoding="utf-8")), encoding="utf-8")
        spec = importlib.util.spec_from_file_location(f"fingerprint_{name}", pkg / "fingerprint.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.PACKAGE_DIR == pkg
        out[name] = module.code_fingerprint("stargate.stages.topk")
    return out


def _sub(pattern: str, repl: str, text: str) -> str:
    new, n = re.subn(pattern, repl, text, count=1, flags=re.M)
    assert n == 1, f"records.py no longer has {pattern!r}: pick another spot for this edit"
    return new


def test_fingerprint_ignores_comments_docstrings_and_formatting(tmp_path):
    """A comment, docstring or formatting edit of a shared module (records.py) reruns nothing; a change of a
    statement or a constant reruns every stage that imports it."""
    assert "stargate.records" in closure("stargate.stages.topk")
    fps = _edited_fingerprints(
        tmp_path,
        {
            "same": lambda t: t,
            "comment": lambda t: _sub(r"^(import \w+)$", r"\1  # an inline comment", t) + "\n# a last comment\n",
            "docstring": lambda t: _sub(
                r'(^def [^\n]*:\n    """)', r"\1Reworded. ", _sub(r'\A"""', '"""Reworded. ', t)
            ),
            "format": lambda t: _sub(
                r"^from __future__ import annotations$", "from __future__ import (\n    annotations,\n)\n\n", t
            ),
            "statement": lambda t: t + "\nFINGERPRINT_PROBE = 1\n",
            "constant": lambda t: t + "\nFINGERPRINT_PROBE = 2\n",
        },
    )
    assert fps["comment"] == fps["same"], "a comment-only edit changed the fingerprint"
    assert fps["docstring"] == fps["same"], "a docstring-only edit changed the fingerprint"
    assert fps["format"] == fps["same"], "a formatting-only edit changed the fingerprint"
    assert fps["statement"] != fps["same"], "a new statement did not change the fingerprint"
    assert fps["constant"] != fps["statement"], "a changed constant did not change the fingerprint"


def test_fingerprint_follows_imports(tmp_path, monkeypatch):
    judge, summarize = code_fingerprint("stargate.stages.judge"), code_fingerprint("stargate.stages.summarize")
    assert judge != summarize
    assert "stargate.backends.base" in closure("stargate.stages.judge")
    assert "stargate.backends.base" not in closure("stargate.stages.summarize")
    assert "stargate.stages.judge" not in closure("stargate.stages.summarize")
