"""The package's shape: no import cycles, and every rule finds its stage in one hop."""

import re
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


def test_fingerprint_follows_imports(tmp_path, monkeypatch):
    judge, summarize = code_fingerprint("stargate.stages.judge"), code_fingerprint("stargate.stages.summarize")
    assert judge != summarize
    assert "stargate.backends.base" in closure("stargate.stages.judge")
    assert "stargate.backends.base" not in closure("stargate.stages.summarize")
    assert "stargate.stages.judge" not in closure("stargate.stages.summarize")
