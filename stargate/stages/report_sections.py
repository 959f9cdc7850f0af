"""The report's sections beyond the paper's tables (issue 24): counts per kind of artifact (each with its own
columns), length-controlled win rates, efficiency per conversation, the Roleplayer audit with example
turns, the judge panel's agreement, and the figures over repeated trials with their noise floor."""

from __future__ import annotations

import html
from collections.abc import Callable

COUNT_TITLES = {
    "empty_generations": "Simulation (test conversations): empty generations and turns",
    "answers": "Answerers (win-rate answers): answers, empty, refused, no top-1",
    "judge": "Judges (verdicts): comparisons, calls, outcomes, refused, unparsable, dropped, empty replies",
}


def counts_tables(counts: dict, table: Callable) -> str:
    """One table per section, with that section's own columns (a single table took the first section's
    columns for every row, so the judges' and answerers' refusals showed '–')."""
    out = []
    for section, by_item in counts.items():
        rows = [{"artifact": item, **vals} for item, vals in by_item.items()]
        columns = ["artifact", *dict.fromkeys(k for r in rows for k in r if k != "artifact")]
        out.append(f"<h3>{html.escape(COUNT_TITLES.get(section, section))}</h3>{table(rows, columns)}")
    return "".join(out)


def _by_questioner(rows: list[dict]) -> list[dict]:
    # trial "all" (the figures pooled over repeated trials) after the numbered trials
    return sorted(
        rows, key=lambda r: (r.get("t", 0), *((1, 0) if r.get("trial") == "all" else (0, r.get("trial", 1))))
    )


def sections(summary: dict, table: Callable) -> list[str]:
    """The HTML parts of the new sections, each under its own <h2>."""
    parts = []
    lc = summary.get("length_control") or []
    parts += [
        "<h2>Length-controlled win rates (AlpacaEval-style; cached verdicts, no new calls)</h2>",
        "<p>P(m_t wins | z) = σ(β0 + β1 z), z = tanh(length difference / its sd); the LC rate is σ(β0), the win "
        "probability at equal length, with a bootstrap 95 % interval; the raw rate counts a tie as half.</p>",
        table(
            _by_questioner(lc),
            [
                "variant",
                "questioner",
                "trial",
                "n_used",
                "raw_win_rate",
                "lc_win_rate",
                "ci_low",
                "ci_high",
                "slope",
                "mean_length_difference",
            ],
        ),  # fmt: skip
    ]
    eff = summary.get("efficiency") or []
    parts += [
        "<h2>Efficiency per conversation (test simulation)</h2>",
        "<p>Tokens: the models' own counts from the simulation's turn files (words: whitespace tokens of the "
        "texts); dollars: the API roles' cost; GPU-seconds: the simulate jobs' wall seconds × their GPUs.</p>",
        table(
            _by_questioner(eff),
            [
                "questioner",
                "trial",
                "n_conversations",
                "questions",
                "questioner_tokens",
                "roleplayer_tokens",
                "questioner_words",
                "roleplayer_words",
                "dollars_per_conversation",
                "gpu_seconds_per_conversation",
            ],
        ),  # fmt: skip
    ]
    audit = summary.get("roleplayer_audit") or []
    rows = [
        {"questioner": r.get("questioner"), "trial": r["trial"], "roleplayer turns": r["n_turns"],
         "judged turns": r.get("n_judged"),
         **{f"{check} (share)": c["share"] for check, c in r["checks"].items()},
         **{check: c["count"] for check, c in r["checks"].items()}}
        for r in _by_questioner(audit)
    ]  # fmt: skip
    examples = [
        f"<li><b>{html.escape(check)}</b> ({html.escape(str(r.get('questioner')))}, trial {r['trial']}, "
        f"{html.escape(str(e['pair']))} conversation {e['conv']}): <i>{html.escape(e['text'][:300])}</i></li>"
        for r in audit
        for check, c in r["checks"].items()
        for e in c["examples"][:2]
    ]
    judged = any(r.get("n_judged") for r in audit)
    parts += [
        "<h2>Roleplayer audit (cheap checks of every Roleplayer turn)</h2>",
        "<p>reveals_persona: ≥ 12 tokens in a row or ≥ 60 % of the persona's content words; answers_task: the "
        "task's words in an answer's form; breaks_character: an assistant's phrase; contradicts_persona: "
        + (
            "the judge pass's verdict on a seeded sample of the turns (share over the judged turns; trial 1).</p>"
            if judged
            else "needs a judge pass (evaluation.roleplayer_audit.judge; not run).</p>"
        ),
        table(rows),
        f"<ul class=examples>{''.join(examples[:12])}</ul>" if examples else "<p><i>no turn flagged</i></p>",
    ]
    panel = summary.get("judge_panel") or {}
    judges = panel.get("judges") or []
    parts += [
        "<h2>Judge panel: agreement between judges, with itself asked again, position consistency, human labels</h2>",
        f"<p>Judges: {html.escape(', '.join(judges) or 'judge')}; panel verdict: "
        f"{html.escape(str(panel.get('rule')))} ({panel.get('n_abstained', 0)} judged orders abstained). "
        "κ = (p_o − p_e) / (1 − p_e) over every judged order; p_o (agreement) beside it.</p>",
        table(
            [*panel.get("kappa", []), *panel.get("repetition", []), *panel.get("human", [])],
            ["kind", "judge", "other", "scope", "n", "agreement", "kappa", "kappa_ci_low", "kappa_ci_high"],
        ),
        table(panel.get("position_consistency", []), ["judge", "scope", "n_both_orders", "n", "consistency"]),
    ]
    if panel.get("winrates"):
        parts.append(
            table(
                [w for w in panel["winrates"]],
                ["judge", "variant", "questioner", "n", "wins", "losses", "ties", "win_rate", "win_rate_ties_half"],
            )
        )
    trials = summary.get("trials") or {}
    floor = trials.get("noise_floor")
    line = (
        f"Noise floor of {html.escape(floor['figure'])} (m{floor['t']}, k = {floor['k']}): ± {floor['floor']:.4g} "
        f"(half-width of the hierarchical 95 % interval; difference {floor['difference']:.4g}, across-trial sd "
        f"{'–' if floor['trial_sd'] is None else format(floor['trial_sd'], '.4g')})."
        if floor and floor.get("floor") is not None
        else "No noise floor (no m_T − m0 figure)."
    )
    parts += [
        f"<h2>Repeated trials (k = {trials.get('k', 1)}): spread, hierarchical intervals, pass^k</h2>",
        f"<p>{line} Intervals resample pairs, then trials within each pair; pass^k is the share of pairs m_t "
        "wins in all k trials, pass@k in any. <code>stargate compare A B</code> tells two runs apart.</p>",
        table(
            trials.get("figures") or [],
            [
                "figure",
                "questioner",
                "k",
                "n_pairs",
                "mean",
                "trial_sd",
                "trial_min",
                "trial_max",
                "ci_low",
                "ci_high",
                "floor",
                "pass_hat_k",
                "pass_at_k",
            ],
        ),  # fmt: skip
    ]
    return parts


def last_trained(summary: dict) -> str | None:
    """m_T of the summary: the largest iteration that is no extra questioner."""
    m = summary.get("manifest") or {}
    extra = set((m.get("questioners") or {}).keys())
    ts = [int(t) for t in (m.get("conversations") or {}) if t not in extra]
    return str(max(ts)) if ts else None
