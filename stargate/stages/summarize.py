"""Evaluation summary (spec §6): log-prob curves over m0..mT with controls, top-1 rows and the general /
specific breakdown, paired differences between iterations, win rates of every variant with bootstrap
intervals, judge position bias, counts, and the paper's values beside ours; CSV, JSON and PNG."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from ..errors import StargateError
from ..evaluation import agreement, outcomes, paper, ratings
from ..evaluation import logprobs as lp
from ..evaluation.plots import plot_all
from ..evaluation.variants import parse as parse_variant
from ..log import get_logger
from ..records import atomic_write_text, read_jsonl, read_meta, write_json
from . import summary_sections as sections
from .common import load_tasks

log = get_logger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--manifest",
        required=True,
        help='JSON: {"logprobs": {T: {condition: PATH}}, "controls": {condition: PATH}, '
        '"judge": {ANSWER_SET: {T: PATH}}, "answers": {ANSWER_SET: {T: PATH}}, "conversations": {T: PATH}, '
        '"simulation": {T: {asked, done, benchmarks}}, "panel": {JUDGE: {ANSWER_SET: {T: PATH}}}, '
        '"trials": {J: {the same for trial J}}} (written by rules/common.smk)',
    )
    p.add_argument("--variants", default="", help="comma-separated configured win-rate variants")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--bootstrap-seed", type=int, default=1)
    p.add_argument("--task-labels", choices=["paper_hand", "none"], default="none")
    p.add_argument("--tasks", help="the test tasks (needed for --task-labels)")
    p.add_argument(
        "--specificity",
        help="the judge's specificity ratings of the test tasks (stargate specificity): a second general/specific "
        "breakdown, rows qa-experimental[-top1]-rated-{general,specific}",
    )
    p.add_argument("--personas", help="the test personas (for the Roleplayer audit)")
    p.add_argument("--panel-rule", choices=agreement.PANEL_RULES, default="majority", help="a judge panel's verdict")
    p.add_argument("--human-labels", help="human verdicts (pair, order, verdict) on the headline comparison")
    p.add_argument("--simulate-gpus", type=int, default=0, help="GPUs of each simulate job (GPU-seconds)")
    p.add_argument("--run", default="{}", help="JSON naming the config that produced this run")
    p.add_argument("--out-dir", required=True)


def _read_judge(answer_set: str, t: int, path: str) -> list[dict]:
    return read_jsonl(path, required=("pair", "group", "randomized_position", "judged"), allow_empty=True)


def winrate_rows(
    judge: dict[str, dict[int, str]], configured: list[str], resamples: int, seed: int, read=_read_judge
) -> list[dict]:
    """Per judge file, every position protocol its judged orders allow (and both orders, when judged), per
    turn group and overall. `read(answer_set, t, path)`: the records (a judge panel's verdicts)."""
    out = []
    for answer_set in sorted(judge):
        for t in sorted(judge[answer_set]):
            path = judge[answer_set][t]
            recs = read(answer_set, t, path)
            protocols = outcomes.protocols_of(recs) or [
                parse_variant(v).positions for v in configured if parse_variant(v).answer_set == answer_set
            ]
            for positions in protocols:
                variant = f"{answer_set}-{positions}"
                res = [(r["group"], outcomes.outcome(r, positions, path)) for r in recs]
                groups = sorted({g for g, _ in res}, key=str)
                for group in [*groups, "overall"]:
                    sel = [o for g, o in res if group == "overall" or g == group]
                    out.append(
                        {
                            "variant": variant,
                            "t": t,
                            "group": group,
                            "configured": variant in configured,
                            **outcomes.tally(sel, resamples, seed),
                        }
                    )
    missing = sorted(set(configured) - {r["variant"] for r in out})
    if missing:
        raise StargateError(f"configured win-rate variant(s) {missing} have no judge file in the manifest")
    return out


def bias_rows(judge: dict[str, dict[int, str]], resamples: int, seed: int, read=_read_judge) -> list[dict]:
    out = []
    for answer_set in sorted(judge):
        for t in sorted(judge[answer_set]):
            recs = read(answer_set, t, judge[answer_set][t])
            b = outcomes.position_bias(recs, resamples, seed)
            if b is not None:
                out.append({"answer_set": answer_set, "t": t, **b})
    return out


def rating_rows(judge: dict[str, dict[int, str]], resamples: int, seed: int) -> list[dict]:
    """Mean 1-7 ratings of m_t's and m0's answers and their agreement with each protocol's verdicts, for
    judge files that rated the answers."""
    out = []
    for answer_set in sorted(judge):
        for t in sorted(judge[answer_set]):
            path = judge[answer_set][t]
            recs = read_jsonl(path, required=("pair", "judged"), allow_empty=True)
            if not recs or not all("ratings" in r for r in recs):
                continue
            verdicts = {p: [outcomes.outcome(r, p, path) for r in recs] for p in outcomes.protocols_of(recs)}
            out.append({"answer_set": answer_set, "t": t, **ratings.summary(recs, verdicts, resamples, seed)})
    return out


def counts(m: dict) -> dict:
    """What was produced but not usable, per artifact: empty generations, dropped and tied verdicts."""
    empties = {}
    for t, path in sorted(m["conversations"].items()):
        meta = read_meta(path)
        empties[f"m{t}"] = {
            "n_empty_generations": meta.get("n_empty", 0),
            "n_empty_turns": meta.get("n_empty_turns", 0),
        }
    answers = {}
    for answer_set, by_t in sorted(m["answers"].items()):
        for t, path in sorted(by_t.items()):
            meta = read_meta(path)
            answers[f"{answer_set}/m{t}"] = {
                "n_answers": meta.get("n_generated", 0),
                "n_empty": meta.get("n_empty", 0),
                "n_refused": meta.get("n_refused", 0),
                "n_no_top1": len(meta.get("no_top1", [])),
            }
    judged = {}
    for answer_set, by_t in sorted(m["judge"].items()):
        for t, path in sorted(by_t.items()):
            meta = read_meta(path)
            judged[f"{answer_set}/m{t}"] = _judge_counts(meta)
    for judge, by_set in sorted((m.get("panel") or {}).items()):  # a panel's other judges
        for answer_set, by_t in sorted(by_set.items()):
            for t, path in sorted(by_t.items()):
                if path not in {p for by in m["judge"].values() for p in by.values()}:
                    judged[f"{answer_set}/m{t} ({judge})"] = _judge_counts(read_meta(path))
    return {"empty_generations": empties, "answers": answers, "judge": judged}


def _judge_counts(meta: dict) -> dict:
    return {
        "n_comparisons": meta.get("n_comparisons", 0),
        "n_calls": meta.get("n_calls", 0),
        **{f"n_{k}": v for k, v in (meta.get("outcomes") or {}).items()},
        "n_dropped": meta.get("n_dropped", 0),
        "n_ratings_unparsable": meta.get("n_ratings_unparsable", 0),
        "n_empty_replies": meta.get("n_empty", 0),
    }


def _trial_manifest(m: dict) -> dict:
    return {
        "logprobs": {int(t): by_c for t, by_c in m["logprobs"].items()},
        "judge": {a: {int(t): p for t, p in by_t.items()} for a, by_t in m["judge"].items()},
        "answers": {a: {int(t): p for t, p in by_t.items()} for a, by_t in (m.get("answers") or {}).items()},
        "conversations": {int(t): p for t, p in m["conversations"].items()},
        "simulation": {int(t): v for t, v in (m.get("simulation") or {}).items()},
        **({"audit_judge": {int(t): p for t, p in m["audit_judge"].items()}} if m.get("audit_judge") else {}),
        **(
            {
                "panel": {
                    j: {a: {int(t): p for t, p in by_t.items()} for a, by_t in by_set.items()}
                    for j, by_set in m["panel"].items()
                }
            }
            if m.get("panel")
            else {}
        ),
    }


def _manifest(text: str) -> dict:
    try:
        m = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StargateError(f"--manifest is not valid JSON: {exc}") from None
    if not isinstance(m, dict):
        raise StargateError("--manifest must be a JSON object")
    missing = {"logprobs", "controls", "judge", "conversations"} - set(m)
    if missing:
        raise StargateError(f"--manifest: missing key(s) {sorted(missing)}")
    return {
        **_trial_manifest(m),
        "controls": dict(m["controls"]),
        "questioners": {int(t): name for t, name in (m.get("questioners") or {}).items()},
        **({"trials": {int(j): _trial_manifest(tm) for j, tm in m["trials"].items()}} if m.get("trials") else {}),
    }


def _labels(args: argparse.Namespace) -> tuple[dict[str, str] | None, str | None]:
    if args.task_labels == "none":
        return None, None
    if not args.tasks:
        raise StargateError("--task-labels paper_hand needs --tasks (the test tasks)")
    tasks = load_tasks(args.tasks)
    note = None
    if len(tasks) != paper.labels_task_count():
        note = (
            f"the paper's hand labels describe its {paper.labels_task_count()} test tasks; this test split has "
            f"{len(tasks)}, so the general/specific rows only exercise the breakdown"
        )
    return {t["task_id"]: paper.task_label(t["task_id"]) for t in tasks}, note


def _rated(args: argparse.Namespace, hand: dict[str, str] | None) -> tuple[dict[str, str] | None, dict | None]:
    """The specificity ratings as task labels, and what summary.json says about them (None without them)."""
    path = getattr(args, "specificity", None)
    if not path:
        return None, None
    recs = read_jsonl(path, required=("task_id", "label"))
    labels = {r["task_id"]: r["label"] for r in recs if r["label"] in ("general", "specific")}
    about = {
        "source": str(path),
        "n_tasks": len(recs),
        "n_general": sum(1 for v in labels.values() if v == "general"),
        "n_specific": sum(1 for v in labels.values() if v == "specific"),
        "n_unrated": len(recs) - len(labels),
    }
    if hand:  # how often the judge's label is the hand label (the original's plot-correlations.py)
        both = [k for k in labels if k in hand]
        about["agreement_with_hand_labels"] = sum(labels[k] == hand[k] for k in both) / len(both) if both else None
    return labels, about


def run(args: argparse.Namespace) -> None:
    out = Path(args.out_dir)
    m = _manifest(args.manifest)
    configured = [v for v in args.variants.split(",") if v]
    for v in configured:
        parse_variant(v)
    try:
        run_id = json.loads(args.run)
    except json.JSONDecodeError as exc:
        raise StargateError(f"--run is not valid JSON: {exc}") from None
    labels, label_note = _labels(args)
    rated, rated_about = _rated(args, labels)
    fr = lp.frames(m["logprobs"], m["controls"])
    fr = lp.with_breakdown(lp.with_breakdown(fr, labels), rated, tag="rated-")
    rows = lp.rows(fr)
    diffs = lp.differences(fr, args.resamples, args.bootstrap_seed)
    judged = sections.Judged(m, args.panel_rule)  # a judge panel's verdicts, or the one judge's
    wins = winrate_rows(m["judge"], configured, args.resamples, args.bootstrap_seed, judged.reader())
    bias = bias_rows(m["judge"], args.resamples, args.bootstrap_seed, judged.reader())
    rated = rating_rows(m["judge"], args.resamples, args.bootstrap_seed)
    names = m["questioners"]  # extra questioners (evaluation.questioners) by their iteration number
    more = sections.compute(args, m, judged, configured, names)
    for r in [*rows, *diffs, *wins, *bias]:
        r["questioner"] = names.get(r["t"], f"m{r['t']}")
    comparison = paper.comparison(
        [r for r in rows if r["t"] not in names], [w for w in wins if w["t"] not in names], run_id
    )
    out.mkdir(parents=True, exist_ok=True)
    # every file names the config that made it: a `run` column in the tables, a footer on the figures
    run_name = str(run_id.get("run_name") or "")
    label = run_label(run_id)
    _write_csv(out / "logprobs.csv", rows, ["condition", "t", "questioner", "mean", "sem", "n"], run_name)
    _write_csv(
        out / "logprob_differences.csv",
        diffs,
        ["condition", "t", "questioner", "vs", "difference", "sem", "ci_low", "ci_high", "n", "n_pairs"],
        run_name,
    )
    _write_csv(out / "winrates.csv", wins, outcomes.WINRATE_FIELDS, run_name)
    _write_csv(out / "paper_comparison.csv", comparison, list(comparison[0]) if comparison else ["metric"], run_name)
    for name, table in more["tables"].items():
        _write_csv(out / f"{name}.csv", table["rows"], table["fields"], run_name)
    headlines = [outcomes.headline(w) for w in wins if w["group"] == "overall"]
    for h in headlines:
        log.info("win rate %s m%s: %s %.2f; %s", h["variant"], h["t"], h["rate_kind"], h["rate"] or 0.0, h["note"])
    c = counts(m)
    write_json(
        out / "summary.json",
        {
            "run": run_id,
            "logprobs": rows,
            "logprob_differences": diffs,
            "winrates": wins,
            # the figure to lead with per variant and questioner, with the decided count behind it
            "winrate_headlines": headlines,
            "position_bias": bias,
            "ratings": rated,
            "paper_comparison": comparison,
            "configured_variants": configured,
            "bootstrap": {"resamples": args.resamples, "seed": args.bootstrap_seed, "level": 0.95, "unit": "pair"},
            "task_labels": {"source": args.task_labels, "note": label_note},
            **({"specificity": rated_about} if rated_about else {}),
            "counts": c,
            **more["json"],
            # kept under their old names for readers of earlier summaries
            "judge_dropped": {k: {"n_dropped": v["n_dropped"]} for k, v in c["judge"].items()},
            "empty_generations": c["empty_generations"],
            "manifest": {k: {str(a): b for a, b in v.items()} for k, v in m.items()},
        },
    )
    plot_all(out, rows, wins, bias, sorted(m["logprobs"]), paper.results(), names, label, diffs)
    log.info("summary: %d log-prob rows, %d differences, %d win-rate rows", len(rows), len(diffs), len(wins))


def run_label(run_id: dict) -> str:
    """`run NAME: config FILES (sha256 PREFIX)`: the config a summary file came from, in one line."""
    files = ", ".join(run_id.get("configfiles") or [])
    digest = str(run_id.get("config_sha256") or "")[:12]
    return f"run {run_id.get('run_name', '?')}: config {files or '?'}" + (f" (sha256 {digest})" if digest else "")


def _write_csv(path: Path, rows: list[dict], fields: list[str], run_name: str = "") -> None:
    frame = pd.DataFrame.from_records(rows, columns=fields)
    frame.insert(0, "run", run_name)
    atomic_write_text(path, frame.to_csv(index=False))
