"""How many judge calls the evaluation makes, as `stargate cost` counts them: the win-rate comparisons of
every answer set in the orders its protocols read (with repeats and ratings), and the Roleplayer audit's
judge pass."""

from __future__ import annotations

from ..api.requests import CHARS_PER_TOKEN
from ..evaluation import audit_judge, protocols, variants
from .cost_inputs import max_tokens, render, stand_in


def judge_calls(config: dict, tasks: dict, personas: dict) -> tuple[int, str]:
    sim = config.get("simulation") or {}
    groups = int(sim.get("max_turns", 3)) - int(sim.get("min_turns", 1)) + 1
    winrate = (config.get("evaluation") or {}).get("winrate") or {}
    per_group = winrate.get("pairs_per_group")
    comparisons = int(config.get("iterations") or 1)  # m1..mT, each against m0
    test_pairs = tasks.get("test", 0) * personas.get("test", 0)
    if per_group is None:
        per_iter, pairs_what = test_pairs, f"every test pair ({test_pairs})"
    else:
        per_iter = min(int(per_group) * groups, test_pairs) if test_pairs else int(per_group) * groups
        pairs_what = f"{per_group} pairs x {groups} turn groups"
    sets = judge_orders(winrate)
    repeats = int(winrate.get("judge_repeats") or 0)  # every judged order asked again (repetition stability)
    if repeats:
        sets = {name: orders * (1 + repeats) for name, orders in sets.items()}
    if winrate.get("ratings"):  # each of the two answers rated on its own
        sets = {name: orders + 2 for name, orders in sets.items()}
    calls = sum(round(per_iter * orders) for orders in sets.values()) * comparisons
    per_set = ", ".join(f"{name} x{orders:g}" for name, orders in sets.items())
    return (
        calls,
        f"{pairs_what} x {comparisons} comparisons (m1..m{comparisons} vs m0) x calls per comparison of each answer set ({per_set}{f' incl. {repeats} repeat(s)' if repeats else ''}{' incl. 2 ratings' if winrate.get('ratings') else ''})",
    )


def judge_orders(winrate: dict) -> dict[str, float]:
    """Judge calls per comparison of every answer set (conversation-answerer): the orders its judge protocols
    read, averaged over the coin flip (stargate.evaluation.protocols.expected_orders)."""
    vs = variants.configured(
        {
            "variants": winrate.get("variants")
            or [{"conversation": "random", "answerer": "mt", "positions": "randomized"}]
        }
    )
    both = winrate.get("both_orders", True)
    return {
        f"{conversation}-{answerer}": protocols.expected_orders(
            variants.positions_for(vs, conversation, answerer), both
        )
        for conversation, answerer in variants.answer_sets(vs)
    }


def audit_step(config: dict, inputs, pset, audit: dict) -> tuple:
    """The Roleplayer audit's judge pass: a seeded sample of at most max_turns Roleplayer turns per questioner
    (m0..mT, trial 1), each judged once with its question and the persona."""
    sim = config.get("simulation") or {}
    lo, hi = int(sim.get("min_turns", 1)), int(sim.get("max_turns", 3))
    pairs = inputs.task_counts.get("test", 0) * inputs.persona_counts.get("test", 0)
    turns = pairs * int(sim.get("conversations_per_pair", 1)) * (lo + hi) / 2
    questioners = (
        int(config.get("iterations") or 1) + 1 + len((config.get("evaluation") or {}).get("questioners") or [])
    )
    per_q = min(int(audit.get("max_turns", 100)), round(turns))
    msgs = (
        audit_judge.prompt(
            pset,
            stand_in(inputs.mean_persona_chars("test")),
            stand_in(inputs.mean_task_chars("test")),
            stand_in(max_tokens(config, "questioner", 256) * CHARS_PER_TOKEN),
            stand_in(max_tokens(config, "roleplayer", 256) * CHARS_PER_TOKEN),
        )
        if pset is not None
        else render(None, "audit")
    )
    what = (
        f"min(max_turns {audit.get('max_turns', 100)}, ~{round(turns):,} Roleplayer turns) x {questioners} questioners"
    )
    return ("audit", audit["judge"], [(per_q * questioners, msgs)], what)
