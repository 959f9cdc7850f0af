"""`stargate method-comparison`: an offline run (STaR-GATE's expert iteration: sft, dpo, rwr) and an online one
(grpo) of the same world, side by side on the same test pairs (`make run-online`).

    stargate method-comparison --offline DIR --online DIR --iterations 2 --output results/summary/online-vs-offline

For m0 and each run's m_T: the mean test log p(gold | conversation) under m0 (qa-experimental) and, in the
learning world, the share of relevant attributes elicited; each m_T - m0 and online - offline with a paired
bootstrap 95 % interval over pairs (evaluation.logprobs.paired_difference: pairs resampled, a pair's
conversations together). The budget beside it: the tokens each method's policy generated to train (offline:
the Questioner's and answerer's tokens of the training splits' simulations and regularizer answers; online: the
rollouts' policy tokens) and the wall seconds of its training jobs (benchmarks/). With `--scorer-model`, the
rewards' agreement with the world's ground truth: per pair, Spearman's rank correlation over m0's test
conversations of the pair between gold_logprob (the score stage's) or info_gain (computed here, m0 the belief
model) and the share elicited, averaged over the pairs where it is defined.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..log import get_logger
from ..records import read_jsonl, read_meta, write_json
from .common import load_conversations, pairs_by_key

log = get_logger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--offline", required=True, help="the offline run's working directory (results/ inside)")
    p.add_argument("--online", required=True, help="the online (grpo) run's working directory")
    p.add_argument("--iterations", type=int, required=True, help="T: m_T of each run is compared")
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--scorer-model", help="m0's folder: compute info_gain for the reward-agreement table")
    p.add_argument("--prompts", default="fixed_v1")
    p.add_argument("--output", required=True, help="folder: comparison.json, comparison.md")


def rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise InputError(path, "missing", fix="run both configs to the end first (make run-online)")
    return [{"pair": r["pair"], "conv": r["conv"], "logprob": r["logprob"]} for r in read_jsonl(path)]


def paired(before: list[dict], after: list[dict], resamples: int, seed: int) -> dict[str, Any]:
    import pandas as pd

    from ..evaluation.logprobs import paired_difference

    d = paired_difference(pd.DataFrame(before), pd.DataFrame(after), resamples, seed)
    return {"mean": d["difference"], "ci95": [d["ci_low"], d["ci_high"]], "n_pairs": d["n_pairs"]}


def mean(values: list[dict]) -> float:
    by: dict[str, list[float]] = {}
    for r in values:
        by.setdefault(r["pair"], []).append(r["logprob"])
    return sum(sum(v) / len(v) for v in by.values()) / len(by)


def elicited_rows(run: Path, t: int, pairs) -> list[dict] | None:
    from ..world import programs

    out = []
    for c in load_conversations(run / f"results/m{t}/conversations/test.jsonl"):
        p = pairs[c["pair"]]
        try:
            out.append(
                {"pair": c["pair"], "conv": c["conv"], "logprob": programs.elicited(c["turns"], p.persona, p.task)}
            )
        except (KeyError, ValueError):
            return None  # not the learning world: no ground truth
    return out


def tokens_out(path: Path) -> int:
    stats = read_meta(path).get("backend_stats") or {}
    return int(stats.get("n_tokens_out") or 0)


def budget(run: Path, T: int) -> dict[str, Any]:
    """What training the Questioners cost: policy tokens generated and the training jobs' wall seconds."""
    import csv

    tokens, seconds, jobs = 0, 0.0, 0
    for t in range(1, T + 1):
        metrics = json.loads((run / f"results/models/m{t}/train_metrics.json").read_text())
        res = metrics["results"]
        if "policy_tokens_generated" in res:  # online: the rollouts' policy tokens
            tokens += int(res["policy_tokens_generated"])
        else:  # offline: m_{t-1}'s questions on its split and its regularizer answers
            for f in (run / f"results/m{t - 1}/sim").rglob("turn*.asked.jsonl"):
                if "test" not in f.parts:  # the evaluation's simulation is the same for both methods
                    tokens += tokens_out(f)
            for f in (run / f"results/m{t - 1}/regularizer").glob("*.jsonl"):
                tokens += tokens_out(f)
    rules = ("simulate", "score", "select", "regularize", "topk", "train", "rollout_prompts", "sft_data")
    for rule in rules:
        for f in (run / "benchmarks" / rule).glob("*.tsv"):
            if rule != "train" and "_test" in f.name:
                continue  # the evaluation's own jobs are the same for both methods
            with f.open() as fh:
                for row in csv.DictReader(fh, delimiter="\t"):
                    seconds += float(row["s"])
                    jobs += 1
    return {"policy_tokens_generated": tokens, "training_wall_s": round(seconds, 1), "jobs_timed": jobs}


def spearman(a: list[float], b: list[float]) -> float | None:
    import numpy as np
    import pandas as pd

    if len(a) < 2 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return float(np.corrcoef(pd.Series(a).rank(), pd.Series(b).rank())[0, 1])


def agreement(run: Path, T: int, pairs, scorer_model: str | None, prompts_name: str) -> dict[str, Any]:
    """Per pair, rank correlation over m0's test conversations of each reward with the share elicited; the mean
    over pairs where it is defined (ties everywhere leave it undefined)."""
    from ..rewards.base import Rollout
    from ..rewards.registry import get_reward
    from ..world import programs

    convs, gold = [], {}
    for t in (0,):  # m0's conversations (3 per pair): what the rewards must rank; info_gain costs 5 scorings each
        lp = {
            (r["pair"], r["conv"]): r["logprob"]
            for r in rows(run / f"results/m{t}/logprobs/test.qa-experimental.jsonl")
        }
        for c in load_conversations(run / f"results/m{t}/conversations/test.jsonl"):
            convs.append((t, c))
            gold[(t, c["pair"], c["conv"])] = lp.get((c["pair"], c["conv"]))
    truth = {
        (t, c["pair"], c["conv"]): programs.elicited(c["turns"], pairs[c["pair"]].persona, pairs[c["pair"]].task)
        for t, c in convs
    }
    rewards = {"gold_logprob": gold}
    if scorer_model:
        from ..backends import load_backend
        from ..prompts import load_prompt_set
        from ..rewards.info_gain import distractors_for

        personas = sorted({p.persona for p in pairs.values()})
        scorer = load_backend({"backend": "hf", "options": {"dtype": "float32", "batch_size": 16}}, scorer_model)
        reward = get_reward("info_gain")(prompts=load_prompt_set(prompts_name), scorer=scorer)
        rolls = [
            Rollout(pair=c["pair"], name=pairs[c["pair"]].name, task=pairs[c["pair"]].task,
                    persona=pairs[c["pair"]].persona, turns=c["turns"],
                    distractors=distractors_for(c["pair"], pairs[c["pair"]].persona, personas, 4, 0))
            for _, c in convs
        ]  # fmt: skip
        values = reward(rolls)
        rewards["info_gain"] = {(t, c["pair"], c["conv"]): v for (t, c), v in zip(convs, values, strict=True)}
    out = {}
    for name, values in rewards.items():
        per_pair = []
        for pair in sorted(pairs):
            keys = [k for k in truth if k[1] == pair and values.get(k) is not None]
            rho = spearman([values[k] for k in keys], [truth[k] for k in keys])
            if rho is not None:
                per_pair.append(rho)
        out[name] = {
            "mean_spearman_per_pair": sum(per_pair) / len(per_pair) if per_pair else None,
            "n_pairs": len(per_pair),
        }
    return out


def markdown(report: dict[str, Any]) -> str:
    def ci(d):
        return f"{d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"

    lines = [f"# Offline vs online, m_{report['iterations']} on the test pairs", ""]
    lines += ["| model | mean log p(gold) | vs m0 | elicited | vs m0 |", "|---|---|---|---|---|"]
    for m in report["models"]:
        el = m.get("elicited")
        lines.append(
            f"| {m['name']} | {m['qa_experimental']:.3f} | {ci(m['vs_m0']) if 'vs_m0' in m else '-'} | "
            f"{'-' if el is None else f'{el:.3f}'} | {ci(m['elicited_vs_m0']) if 'elicited_vs_m0' in m else '-'} |"
        )
    d = report["online_minus_offline"]
    lines += ["", f"online - offline: log p(gold) {ci(d['qa_experimental'])}"]
    if "elicited" in d:
        lines[-1] += f"; elicited {ci(d['elicited'])}"
    lines += ["", "## Budget (training the Questioners)", "", "| method | policy tokens generated | training wall s |"]
    lines += ["|---|---|---|"]
    for k, b in report["budget"].items():
        lines.append(f"| {k} | {b['policy_tokens_generated']} | {b['training_wall_s']} |")
    if report.get("reward_agreement"):
        lines += ["", "## Reward agreement with the world's ground truth (Spearman per pair, mean)", ""]
        for k, a in report["reward_agreement"].items():
            v = a["mean_spearman_per_pair"]
            lines.append(f"- {k}: {'undefined' if v is None else f'{v:+.3f}'} over {a['n_pairs']} pairs")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> None:
    off, on, T = Path(args.offline), Path(args.online), args.iterations
    pairs = pairs_by_key(off / "results/data/tasks/test.jsonl", off / "results/data/personas/test.jsonl")
    lp = lambda run, t: rows(run / f"results/m{t}/logprobs/test.qa-experimental.jsonl")  # noqa: E731
    base, base_on = lp(off, 0), lp(on, 0)
    if sorted(map(json.dumps, base)) != sorted(map(json.dumps, base_on)):
        log.warning("the two runs' m0 test scores differ (other seeds or config?): m0 is taken from the offline run")
    method = lambda run: json.loads((run / f"results/models/m{T}/train_metrics.json").read_text())["spec"]["method"]  # noqa: E731
    models: list[dict[str, Any]] = []
    el0 = elicited_rows(off, 0, pairs)
    for name, run, t in (
        ("m0", off, 0),
        (f"offline ({method(off)}) m{T}", off, T),
        (f"online ({method(on)}) m{T}", on, T),
    ):
        r = lp(run, t)
        m: dict[str, Any] = {"name": name, "qa_experimental": mean(r)}
        el = elicited_rows(run, t, pairs)
        m["elicited"] = mean(el) if el else None
        if t:
            m["vs_m0"] = paired(base, r, args.resamples, args.seed)
            if el and el0:
                m["elicited_vs_m0"] = paired(el0, el, args.resamples, args.seed)
        models.append(m)
    diff = {"qa_experimental": paired(lp(off, T), lp(on, T), args.resamples, args.seed)}
    el_off, el_on = elicited_rows(off, T, pairs), elicited_rows(on, T, pairs)
    if el_off and el_on:
        diff["elicited"] = paired(el_off, el_on, args.resamples, args.seed)
    report = {
        "iterations": T,
        "models": models,
        "online_minus_offline": diff,
        "budget": {"offline": budget(off, T), "online": budget(on, T)},
        "reward_agreement": agreement(off, T, pairs, args.scorer_model, args.prompts) if el0 else None,
    }
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "comparison.json", report)
    (out / "comparison.md").write_text(markdown(report), encoding="utf-8")
    log.info("\n%s", markdown(report))
