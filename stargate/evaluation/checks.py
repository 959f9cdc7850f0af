"""Checks of the evaluation keys a JSON schema cannot express (the judge panel, the human-label file), as a
list of problems: stargate/workflow/startup.py passes them to config.check_config's `extra` (so the stages'
code, which imports stargate.config, is not changed by them), and `stargate cost` runs them too."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

JUDGE_ROLE_PREFIX = "judge_"


def evaluation_problems(config: dict[str, Any], resolve: Callable[[str], str] | None = None) -> list[str]:
    """Every problem of evaluation.judges / human_labels / roleplayer_audit: a panel member or audit judge
    that is no role of `roles`, an extra judge role no panel or audit uses (it would never run), a human-label file that does not exist (`resolve`
    maps a config path to the file a stage reads)."""
    problems = []
    ev = config.get("evaluation") or {}
    roles = config.get("roles") or {}
    judges = list(ev.get("judges") or ["judge"])
    for i, name in enumerate(judges):
        if name not in roles:
            problems.append(
                f"evaluation.judges[{i}]: '{name}' is not a role; add roles.{name} (a judge role, any backend) "
                "or remove it from the panel"
            )
    auditor = (ev.get("roleplayer_audit") or {}).get("judge")
    if auditor and auditor not in roles:
        problems.append(
            f"evaluation.roleplayer_audit.judge: '{auditor}' is not a role; name a role of `roles` (e.g. judge) or null"
        )
    unlisted = sorted(r for r in roles if r.startswith(JUDGE_ROLE_PREFIX) and r not in judges and r != auditor)
    if unlisted:
        problems.append(
            f"roles: {', '.join(unlisted)} {'is' if len(unlisted) == 1 else 'are'} in no judge panel; list "
            f"{'it' if len(unlisted) == 1 else 'them'} in evaluation.judges or remove the role(s)"
        )
    if ev.get("panel_verdict", "majority") != "majority" and len(judges) < 2:
        problems.append("evaluation.panel_verdict: a panel rule needs two or more evaluation.judges")
    labels = ev.get("human_labels")
    if labels:
        path = resolve(labels) if resolve else labels
        if not os.path.isfile(path):
            problems.append(f"evaluation.human_labels: {path} is not a file")
        elif not str(path).lower().endswith((".jsonl", ".json", ".csv")):
            problems.append(f"evaluation.human_labels: {path}: give a .jsonl or .csv file")
        if not (ev.get("winrate") or {}).get("variants"):
            problems.append("evaluation.human_labels: no win-rate variant to compare the labels with")
    return problems
