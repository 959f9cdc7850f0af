"""The report's tables as one self-contained HTML page (no scripts): the paper comparison, win rates of every
variant with intervals, position bias, log-prob differences, counts of what was empty / dropped / refused,
sample conversations of m0 and m_t on the same pair, per-stage wall time from benchmarks/, and the config.
`snakemake --report` embeds it beside the summary's plots."""

from __future__ import annotations

import argparse
import html
import json
from pathlib import Path

import pandas as pd
import yaml

from ..errors import StargateError
from ..evaluation.outcomes import WINRATE_FIELDS
from ..log import get_logger
from ..records import atomic_write_text, read_jsonl
from . import report_sections
from .common import load_conversations, pairs_by_key

log = get_logger(__name__)

STYLE = """
body{font-family:sans-serif;font-size:13px;margin:1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
th{background:#f0f0f0}td.l,th.l{text-align:left}h2{margin-top:1.5em;border-bottom:1px solid #999}
.conv{display:flex;gap:1em}.conv>div{flex:1;border:1px solid #ccc;padding:.5em}
.q{color:#05a}.r{color:#a50}.ans{background:#f6f6f6;padding:.3em;white-space:pre-wrap}pre{font-size:11px}
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--summary", required=True, help="results/summary/summary.json")
    p.add_argument("--tasks", required=True, help="the test tasks")
    p.add_argument("--personas", required=True, help="the test personas")
    p.add_argument("--benchmarks", required=True, help="the benchmarks/ folder of the run")
    p.add_argument("--config", required=True, help="the run's config as JSON")
    p.add_argument("--output", required=True)


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:.1f}"
    return html.escape(str(v))


def table(rows: list[dict], columns: list[str] | None = None) -> str:
    if not rows:
        return "<p><i>none</i></p>"
    columns = columns or list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class=l>{_fmt(r.get(c))}</td>" if isinstance(r.get(c), str) else f"<td>{_fmt(r.get(c))}</td>"
            for c in columns
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def wall_times(folder: Path) -> list[dict]:
    """Seconds per stage (the benchmark folder's subfolder = rule), summed over its jobs."""
    rows = []
    for stage in sorted(p for p in folder.glob("*") if p.is_dir()):
        files = sorted(stage.glob("*.tsv"))
        secs = [float(pd.read_csv(f, sep="\t")["s"].iloc[-1]) for f in files]
        if secs:
            rows.append({"stage": stage.name, "jobs": len(secs), "total_s": sum(secs), "max_s": max(secs)})
    return rows


def samples(summary: dict, tasks: str, personas: str, n: int = 2) -> str:
    """m0's and m_T's conversation and answer on the same pairs (first answer set, e.g. random-mt); m_T is the
    last trained questioner, never an extra one (evaluation.questioners)."""
    m = summary["manifest"]
    if not m.get("answers"):
        return "<p><i>no win-rate answers</i></p>"
    answer_set = sorted(m["answers"])[0]
    by_t = m["answers"][answer_set]
    last = report_sections.last_trained(summary)
    if last is None or last not in by_t or last == "0":
        return "<p><i>no trained questioner's answers</i></p>"
    pairs = pairs_by_key(tasks, personas)
    answers = {t: {r["pair"]: r for r in read_jsonl(by_t[t], allow_empty=True)} for t in ("0", last)}
    convs = {t: {(c["pair"], c["conv"]): c for c in load_conversations(m["conversations"][t])} for t in ("0", last)}
    common = [k for k in answers["0"] if k in answers[last]][:n]
    out = [f"<p>Answer set <code>{html.escape(answer_set)}</code>: m0 vs m{last} on the same pairs.</p>"]
    for key in common:
        p = pairs[key]
        cols = []
        for t in ("0", last):
            a = answers[t][key]
            c = convs[t].get((key, a["conv"]), {"turns": []})
            turns = "".join(
                f"<p class={'q' if x['role'] == 'questioner' else 'r'}><b>{html.escape(x['role'])}:</b> "
                f"{html.escape(x['text'])}</p>"
                for x in c["turns"]
            )
            cols.append(
                f"<div><h4>m{t} (conversation {a['conv']})</h4>{turns}<p><b>answer:</b></p>"
                f"<div class=ans>{html.escape(a['text'] or '')}</div></div>"
            )
        out.append(
            f"<h3>{html.escape(key)}</h3><p><b>task:</b> {html.escape(p.task)}<br><b>persona:</b> "
            f"{html.escape(p.persona[:400])}</p><div class=conv>{''.join(cols)}</div>"
        )
    return "".join(out)


def training_line(run_id: dict) -> str:
    """The training method and regularizer the summary names (absent from summaries before they did)."""
    training = run_id.get("training")
    if not training:
        return ""
    return f"Training: method {training.get('method')}, regularizer {training.get('regularizer')}. "


def run(args: argparse.Namespace) -> None:
    summary = json.loads(Path(args.summary).read_text(encoding="utf-8"))
    try:
        config = json.loads(args.config)
    except json.JSONDecodeError as exc:
        raise StargateError(f"--config is not valid JSON: {exc}") from None
    run_id = summary.get("run") or {}
    overall = [w for w in summary["winrates"] if w["group"] == "overall"]
    top_lp = [r for r in summary["logprobs"] if not r["condition"].endswith(("-general", "-specific"))]
    parts = [
        f"<h1>STaR-GATE evaluation: {html.escape(str(run_id.get('run_name')))}</h1>",
        f"<p>Config files: {html.escape(', '.join(run_id.get('configfiles', [])))}; effective config sha256 "
        f"<code>{html.escape(str(run_id.get('config_sha256')))}</code>. {html.escape(training_line(run_id))}"
        "Intervals: bootstrap 95 %, "
        f"{summary['bootstrap']['resamples']} resamples of pairs, seed {summary['bootstrap']['seed']}.</p>",
        "<h2>This run beside the paper</h2>",
        table(
            summary["paper_comparison"],
            [
                "metric",
                "name",
                "t",
                "ours",
                "ours_ci_low",
                "ours_ci_high",
                "paper",
                "difference",
                "ours_sem",
                "paper_sem",
                "paper_source",
            ],
        ),
        "<h2>Win rates vs m0 (every variant; ties and invalid verdicts dropped from win_rate)</h2>",
        table(
            overall,
            [f for f in WINRATE_FIELDS if f not in ("questioner", "group")],
        ),
        "<h2>Judge position bias (both orders judged)</h2>",
        table(summary["position_bias"]),
        "<h2>Absolute 1-7 ratings and their agreement with the pairwise verdicts</h2>",
        table(summary.get("ratings") or []),
        "<h2>Log-prob differences between iterations (paired; bootstrap over pairs)</h2>",
        table(summary["logprob_differences"]),
        "<h2>Log-probs (mean ± SEM)</h2>",
        table(top_lp, ["condition", "t", "mean", "sem", "n"]),
        "<h2>General vs specific tasks (qa-experimental)</h2>",
        f"<p>{html.escape(summary['task_labels'].get('note') or 'the paper hand labels (spec §6.1)')}</p>",
        table(
            [r for r in summary["logprobs"] if r["condition"].endswith(("-general", "-specific"))],
            ["condition", "t", "mean", "sem", "n"],
        ),
        "<h2>Counts: empty generations, judge outcomes, dropped verdicts, refusals</h2>",
        report_sections.counts_tables(summary["counts"], table),
        *report_sections.sections(summary, table),
        "<h2>Sample conversations</h2>",
        samples(summary, args.tasks, args.personas),
        "<h2>Wall time per stage (benchmarks/)</h2>",
        table(wall_times(Path(args.benchmarks))),
        "<h2>Config</h2>",
        f"<pre>{html.escape(yaml.safe_dump(config, sort_keys=False))}</pre>",
    ]
    page = (
        "<!DOCTYPE html><html><head><meta charset=utf-8><title>stargate evaluation</title>"
        f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )
    atomic_write_text(args.output, page)
    log.info("wrote %s", args.output)
