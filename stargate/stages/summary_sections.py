"""The summary's sections of issue 24, from the files the manifest names (no model is called): the judge
panel's verdicts and agreement, length-controlled win rates, efficiency per conversation, the Roleplayer
audit, and every log-prob and win-rate figure across repeated trials. The statistics are the pure
functions of stargate/evaluation/ (agreement, length_control, efficiency, roleplayer_audit, trials)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..evaluation import agreement, efficiency, roleplayer_audit
from ..evaluation import logprobs as lp
from ..evaluation import trials as tr
from ..evaluation.outcomes import outcome, tally
from ..evaluation.variants import parse as parse_variant
from ..records import read_jsonl, read_meta
from . import summary_length
from .common import load_conversations, pairs_by_key
from .summary_judged import Judged

# what a trial figure is per pair: the conditions scored per conversation (the controls do not change)
TRIAL_CONDITIONS = ("qa-experimental", "qa-experimental-top1", "pos-control-1", "shuffled")


# ----------------------------------------------------------------------------------- efficiency
def _meta_sum(paths: list[str], key: str) -> float | None:
    values = [(read_meta(p).get("backend_stats") or {}).get(key) for p in paths if Path(p).exists()]
    values = [float(v) for v in values if v is not None]
    return sum(values) if values else None


def _benchmark_seconds(paths: list[str]) -> float | None:
    found = [Path(p) for p in paths if Path(p).is_file()]
    return sum(efficiency.benchmark_seconds(p.read_text()) for p in found) if found else None


def efficiency_rows(m: dict, simulate_gpus: int) -> list[dict]:
    """Per questioner and trial: questions, Questioner and Roleplayer tokens per conversation (the models'
    own token counts from the simulation's turn files, whitespace tokens of the texts beside them), dollars
    (API roles' cost_usd in those files) and GPU-seconds (benchmark seconds x the simulate job's GPUs)."""
    out = []
    by_trial = {1: m, **{int(j): tm for j, tm in (m.get("trials") or {}).items()}}
    for trial, tm in sorted(by_trial.items()):
        for t, path in sorted(tm["conversations"].items()):
            convs = load_conversations(path, allow_empty=True)
            n = len(convs)
            words = efficiency.summarize(convs)
            sim = (tm.get("simulation") or {}).get(t) or {}
            asked, done = sim.get("asked") or [], sim.get("done") or []
            q_tok, r_tok = _meta_sum(asked, "n_tokens_out"), _meta_sum(done, "n_tokens_out")
            dollars = None
            if asked or done:
                dollars = sum(v for v in (_meta_sum(asked, "cost_usd"), _meta_sum(done, "cost_usd")) if v) or 0.0
            secs = _benchmark_seconds(sim.get("benchmarks") or [])
            gpu = efficiency.gpu_seconds([(secs, simulate_gpus)]) if secs is not None else None
            out.append(
                {
                    "t": t,
                    "trial": trial,
                    "n_conversations": n,
                    "questions": words["mean_questions"],
                    "questioner_tokens": efficiency.per_conversation(q_tok, n),
                    "roleplayer_tokens": efficiency.per_conversation(r_tok, n),
                    "questioner_words": words["mean_questioner_tokens"],
                    "roleplayer_words": words["mean_roleplayer_tokens"],
                    **{k: v for k, v in efficiency.costs(dollars, gpu, n).items() if k != "n_conversations"},
                    "simulation_seconds": secs,
                    "simulate_gpus": simulate_gpus,
                }
            )
    return out


# ------------------------------------------------------------------------------ roleplayer audit
def audit_rows(m: dict, tasks: str, personas: str, examples: int = 3) -> list[dict]:
    """The cheap Roleplayer checks per questioner and trial: counts, shares and example turns."""
    pairs = pairs_by_key(tasks, personas)
    persona_of = {k: p.persona for k, p in pairs.items()}
    task_of = {k: p.task for k, p in pairs.items()}
    out = []
    by_trial = {1: m, **{int(j): tm for j, tm in (m.get("trials") or {}).items()}}
    for trial, tm in sorted(by_trial.items()):
        for t, path in sorted(tm["conversations"].items()):
            judged = (tm.get("audit_judge") or {}).get(t)  # the judge pass, trial 1 (evaluation.roleplayer_audit)
            verdicts = (
                {
                    (r["pair"], int(r["conv"]), int(r["turn"])): r["contradicts"]
                    for r in read_jsonl(judged, allow_empty=True)
                }
                if judged
                else None
            )
            a = roleplayer_audit.audit(
                load_conversations(path, allow_empty=True), persona_of, task_of, None, examples, verdicts=verdicts
            )
            out.append({"t": t, "trial": trial, **a})
    return out


def audit_table(rows: list[dict]) -> list[dict]:
    """One row per (questioner, trial, check) for the CSV and the report."""
    return [
        {
            "t": r["t"],
            "trial": r["trial"],
            "questioner": r.get("questioner"),
            "check": check,
            "n_turns": r["n_turns"],
            "n_judged": r.get("n_judged") if check == "contradicts_persona" else None,
            "count": c["count"],
            "share": c["share"],
            "example": (c["examples"][0]["text"][:160] if c["examples"] else None),
        }
        for r in rows
        for check, c in r["checks"].items()
    ]


# ----------------------------------------------------------------------------------- judge panel
def _labels(judged: Judged, judge: str, scope: list[tuple[int, str, int]]) -> dict:
    """{(trial, answer set, t, pair, order): outcome} of one judge over the comparisons in `scope`."""
    out = {}
    for trial, answer_set, t in scope:
        for (pair, order), label in agreement.labels_of(judged.member(judge, trial, answer_set, t)).items():
            out[(trial, answer_set, t, pair, order)] = label
    return out


def _kappa_row(kind: str, a: str, b: str, la: dict, lb: dict, resamples: int, seed: int, scope: str) -> dict:
    items = sorted(set(la) & set(lb))
    k = agreement.cohen_kappa([la[i] for i in items], [lb[i] for i in items], resamples, seed)
    return {"kind": kind, "judge": a, "other": b, "scope": scope, **k}


def panel_rows(
    judged: Judged, configured: list[str], last_t: int | None, human: dict | None, resamples: int, seed: int
) -> dict:
    """κ between every two judges (over every judged order of every answer set, questioner and trial, and
    per answer set), each judge's position consistency, and each judge's and the panel's agreement with
    the human labels on the headline comparison (the first configured variant's answer set, m_T, trial 1)."""
    judges = judged.judges
    scope = [
        (trial, a, t)
        for trial, tm in sorted(judged.by_trial.items())
        for a in sorted(tm["judge"])
        for t in tm["judge"][a]
    ]
    labels = {j: _labels(judged, j, scope) for j in judges}
    kappas, consistency, repetition, humans = [], [], [], []
    for i, a in enumerate(judges):
        for b in judges[i + 1 :]:
            kappas.append(_kappa_row("judges", a, b, labels[a], labels[b], resamples, seed, "all"))
            for aset in sorted({s[1] for s in scope}):
                sub = {k: v for k, v in labels[a].items() if k[1] == aset}
                kappas.append(_kappa_row("judges", a, b, sub, labels[b], resamples, seed, aset))
    for j in judges:
        recs = [r for trial, a, t in scope for r in judged.member(j, trial, a, t)]
        consistency.append({"judge": j, "scope": "all", **agreement.position_consistency(recs)})
        stability = agreement.repetition_stability(recs, resamples=resamples, seed=seed)
        if stability is not None:  # evaluation.winrate.judge_repeats
            repetition.append({"kind": "repetition", "judge": j, "other": "itself, asked again", "scope": "all",
                               **stability})  # fmt: skip
    if human and configured and last_t is not None:
        headline = parse_variant(configured[0]).answer_set
        for j in [*judges, *(["panel"] if len(judges) > 1 else [])]:
            recs = judged.records(1, headline, last_t) if j == "panel" else judged.member(j, 1, headline, last_t)
            h = agreement.human_agreement(recs, human, resamples, seed)
            humans.append(
                {"kind": "human", "judge": j, "other": "human labels", "scope": f"{headline} m{last_t}", **h}
            )
    winrates = []
    for j in judges if len(judges) > 1 else []:  # each judge's own win rate of every configured variant
        for name in configured:
            v = parse_variant(name)
            for t in sorted(judged.by_trial[1]["judge"].get(v.answer_set) or {}):
                outs = [outcome(r, v.positions) for r in judged.member(j, 1, v.answer_set, t)]
                winrates.append({"judge": j, "variant": name, "t": t, **tally(outs, resamples, seed)})
    return {
        "judges": judges,
        "rule": judged.rule,
        "n_abstained": judged.n_abstain,
        "kappa": kappas,
        "position_consistency": consistency,
        "repetition": repetition,
        "human": humans,
        "winrates": winrates,
    }


def judge_table(panel: dict) -> list[dict]:
    """judges.csv: one row per agreement figure (κ between judges, against humans, position consistency)."""
    rows = [*panel["kappa"], *panel.get("repetition", []), *panel["human"]]
    rows += [
        {
            "kind": "position_consistency",
            "judge": c["judge"],
            "scope": c["scope"],
            "n": c["n"],
            "agreement": c["consistency"],
        }
        for c in panel["position_consistency"]
    ]
    return rows


# --------------------------------------------------------------------------------------- trials
def _pair_means(df: pd.DataFrame) -> dict[str, float]:
    return {str(k): float(v) for k, v in df.groupby("pair")["logprob"].mean().items()}


def trial_rows(m: dict, judged: Judged, configured: list[str], resamples: int, seed: int) -> list[dict]:
    """Every log-prob and win-rate figure over the k trials: the mean of all cells, per-trial means, their
    spread, the hierarchical (pairs, then trials) bootstrap interval; m_t - m0 as paired differences;
    pass^k and pass@k of every win rate (stargate.evaluation.trials)."""
    by_trial = judged.by_trial
    k = len(by_trial)
    frames = {j: lp.frames(tm["logprobs"], {}) for j, tm in sorted(by_trial.items())}
    out = []
    keys = sorted({key for fr in frames.values() for key in fr if key[0] in TRIAL_CONDITIONS})
    cells = {key: [_pair_means(frames[j][key]) for j in sorted(frames) if key in frames[j]] for key in keys}
    for cond, t in keys:
        if len(cells[(cond, t)]) != k:
            continue
        _, x = tr.matrix(cells[(cond, t)], f"{cond} m{t}")
        out.append({"figure": f"logprob {cond}", "t": t, "vs": None, **tr.summarize(x, resamples, seed)})
        if t != 0 and (cond, 0) in cells and len(cells[(cond, 0)]) == k:
            _, x0 = tr.matrix(cells[(cond, 0)], f"{cond} m0")
            out.append({"figure": f"logprob {cond} - m0", "t": t, "vs": 0, **tr.difference(x, x0, resamples, seed)})
    for name in configured:
        v = parse_variant(name)
        for t in sorted(by_trial[1]["judge"].get(v.answer_set) or {}):
            per_trial = []
            for j in sorted(by_trial):
                recs = judged.records(j, v.answer_set, t)
                per_trial.append(
                    dict(
                        zip(
                            [r["pair"] for r in recs],
                            tr.win_values([outcome(r, v.positions) for r in recs]),
                            strict=True,
                        )
                    )
                )
            _, x = tr.matrix(per_trial, f"{name} m{t}")
            row = {"figure": f"win rate {name}", "t": t, "vs": 0, **tr.summarize(x, resamples, seed)}
            c = tr.consistency(np.nan_to_num(x, nan=0.0), resamples=resamples, seed=seed)
            row.update({key: c[key] for key in c if key.startswith("pass_")})
            out.append(row)
    for r in out:
        r["floor"] = (r["ci_high"] - r["ci_low"]) / 2 if r["ci_low"] is not None and r["ci_high"] is not None else None
    return out


TRIAL_FIELDS = [
    "figure", "t", "questioner", "vs", "k", "n_pairs", "n_cells", "mean", "trial_sd", "trial_min", "trial_max",
    "ci_low", "ci_high", "floor", "pass_hat_k", "pass_hat_k_ci_low", "pass_hat_k_ci_high", "pass_at_k",
    "per_trial_means",
]  # fmt: skip


def noise_floor_line(rows: list[dict], last_t: int | None) -> dict | None:
    """The headline noise floor: qa-experimental m_T - m0 over the trials (half-width of its interval)."""
    for r in rows:
        if r["figure"] == "logprob qa-experimental - m0" and r["t"] == last_t:
            return {
                "figure": r["figure"],
                "t": r["t"],
                "k": r["k"],
                "difference": r["mean"],
                "floor": r["floor"],
                "trial_sd": r["trial_sd"],
                "ci_low": r["ci_low"],
                "ci_high": r["ci_high"],
            }
    return None


# -------------------------------------------------------------------------------------- together
LENGTH_FIELDS = [
    "variant", "t", "questioner", "trial", "positions", "n", "n_used", "ties", "raw_win_rate", "lc_win_rate",
    "ci_low", "ci_high", "intercept", "slope", "length_scale", "mean_length_difference",
]  # fmt: skip
EFFICIENCY_FIELDS = [
    "t", "questioner", "trial", "n_conversations", "questions", "questioner_tokens", "roleplayer_tokens",
    "questioner_words", "roleplayer_words", "dollars_total", "dollars_per_conversation", "gpu_seconds_total",
    "gpu_seconds_per_conversation", "simulation_seconds", "simulate_gpus",
]  # fmt: skip
AUDIT_FIELDS = ["t", "questioner", "trial", "check", "n_turns", "count", "share", "example"]
JUDGE_FIELDS = [
    "kind", "judge", "other", "scope", "n", "n_dropped", "agreement", "agreement_ci_low", "agreement_ci_high",
    "expected", "kappa", "kappa_ci_low", "kappa_ci_high",
]  # fmt: skip


def last_trained(m: dict, names: dict) -> int | None:
    """m_T: the last trained questioner (the largest t that is no extra questioner)."""
    ts = [t for t in m["conversations"] if t not in names]
    return max(ts) if ts else None


def compute(args, m: dict, judged: Judged, configured: list[str], names: dict) -> dict:
    """The sections as CSV tables ({name: {rows, fields}}) and summary.json entries."""
    resamples, seed = args.resamples, args.bootstrap_seed
    last = last_trained(m, names)
    human = agreement.read_human_labels(args.human_labels) if getattr(args, "human_labels", None) else None
    length = summary_length.length_rows(judged, configured, resamples, seed)
    eff = efficiency_rows(m, getattr(args, "simulate_gpus", 0) or 0)
    audit = audit_rows(m, args.tasks, args.personas) if getattr(args, "personas", None) and args.tasks else []
    trials = trial_rows(m, judged, configured, resamples, seed) + summary_length.lc_trial_rows(length)
    panel = panel_rows(judged, configured, last, human, resamples, seed)
    for r in [*length, *eff, *audit, *trials, *panel["winrates"]]:
        r["questioner"] = names.get(r["t"], f"m{r['t']}")
    audit_flat = audit_table(audit)
    floor = noise_floor_line(trials, last)
    return {
        "tables": {
            "length_control": {"rows": length, "fields": LENGTH_FIELDS},
            "efficiency": {"rows": eff, "fields": EFFICIENCY_FIELDS},
            "roleplayer_audit": {"rows": audit_flat, "fields": AUDIT_FIELDS},
            "judges": {"rows": judge_table(panel), "fields": JUDGE_FIELDS},
            "trials": {"rows": trials, "fields": TRIAL_FIELDS},
        },
        "json": {
            "length_control": length,
            "efficiency": eff,
            "roleplayer_audit": audit,
            "judge_panel": {
                **panel,
                "n_abstained": judged.n_abstain,
                "human_labels": getattr(args, "human_labels", None),
            },
            "trials": {"k": len(judged.by_trial), "figures": trials, "noise_floor": floor, "last_trained": last},
        },
    }
