"""`stargate cost`: calls, tokens and USD a config will spend on API-backed steps, before anything runs.

Each step that can call an API is priced twice, online and through the Batch API (half price):

    personas  persona_generator, one call per generated persona (none with data.personas.source: file)
    names     persona_generator, one call per persona with data.names: llm (none with regex)
    oracle    oracle, one call per persona-task pair of the splits used (none with data.oracle.source: file)
    judge     every judge of the panel (evaluation.judges; one row each), pairs_per_group x turn groups (or
              every test pair) x T comparisons x answer sets (conversation x answerer of
              evaluation.winrate.variants) x orders (2 with both_orders) x evaluation.trials
    specificity  judge, one rating per test task with evaluation.specificity_rating (none without)

Input is measured on the real prompt texts where they exist (the prompt set's templates, task and persona
files, the seed personas of each split); text that does not exist yet (generated personas, the answers the
judge compares) is counted at its role's max_tokens, and output at n x max_tokens: upper bounds.

Below the table, every win-rate variant (the configured ones and the paper's six) is priced on its own: the
judge calls it alone would make with every judge of the panel, online and on the Batch API, so a variant
left out of the config (opt-in) shows what adding it would cost (variants of one answer set share calls, so
these are not additive).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path

from ..api.accounting import BATCH_DISCOUNT, Ledger, call_cost, resolve_prices
from ..api.cache import resolve_cache_dir
from ..api.requests import CHARS_PER_TOKEN, estimate_prompt_tokens, tokenizer_name
from ..config import load_config
from ..errors import StargateError
from ..evaluation import paper, variants
from ..evaluation.checks import JUDGE_ROLE_PREFIX
from ..prompts import load_prompt_set
from . import cost_judge
from .cost_inputs import SPLITS, max_tokens
from .cost_inputs import ConfigInputs as _Inputs  # (plan.hours counts pairs with it too)
from .cost_inputs import render as _render
from .cost_inputs import stand_in as _x

ESTIMATED_ROLES = ("oracle", "persona_generator", "judge")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--configfile",
        "--config",
        dest="configfile",
        default="config/config.yaml",
        help="experiment config to estimate (default: config/config.yaml)",
    )
    parser.add_argument(
        "--roles", default=",".join(ESTIMATED_ROLES), help="comma-separated roles to estimate (default: %(default)s)"
    )
    parser.add_argument(
        "--all-backends",
        action="store_true",
        help="also price roles that run on local backends (hf, vllm) as if they were API calls",
    )
    parser.add_argument("--json", action="store_true", help="print the estimate as JSON instead of a table")
    parser.add_argument(
        "--ledger", action="store_true", help="also print what the ledger of the API cache says was actually spent"
    )


def run(args: argparse.Namespace) -> int:
    path = Path(args.configfile)
    if not path.exists():
        raise StargateError(f"{path}: config file does not exist (fix: --configfile)")
    config = load_config(path)  # validated, defaults filled from the schema: what the workflow would run
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    est = estimate(config, base_dir=Path.cwd(), roles=roles, all_backends=args.all_backends)
    if args.json:
        print(json.dumps(est, indent=2))
    else:
        print(format_table(est, title=f"API cost estimate for {path}"))
    if args.ledger:
        api = config.get("api") or {}
        ledger = Ledger(resolve_cache_dir(api.get("cache_dir")) / "ledger.jsonl")
        summary = ledger.summary()
        print(f"\nLedger {ledger.path}: " + ("empty" if not summary else ""))
        for stage, s in sorted(summary.items()):
            print(
                f"  {stage:<20} paid {int(s.get('paid_calls', 0)):>7}  batch {int(s.get('batch_calls', 0)):>7}  "
                f"cached {int(s.get('cached_calls', 0)):>7}  tokens in {int(s.get('prompt_tokens', 0)):>10}  "
                f"out {int(s.get('completion_tokens', 0)):>9}  ${s.get('cost_usd', 0.0):,.2f}"
            )
    return 0


# ------------------------------------------------------------------------------------------ estimate
def estimate(
    config: dict, base_dir: Path | None = None, roles: Iterable[str] = ESTIMATED_ROLES, all_backends: bool = False
) -> dict:
    """Calls, characters, tokens and USD (online and Batch API) of every API step of `config`."""
    notes: list[str] = []
    inputs = _Inputs(config, base_dir or Path.cwd(), notes)
    data = inputs.data
    pset = _prompt_set(config.get("prompts"), notes)
    wanted = set(roles)
    for role in wanted - set(ESTIMATED_ROLES):
        if not role.startswith(JUDGE_ROLE_PREFIX):
            notes.append(f"role '{role}': no call-count rule; skipped")
    steps: list[tuple[str, str, list[tuple[int, list[dict]]], str]] = []
    splits = inputs.splits

    # personas: one call per generated persona; the prompt holds two seed personas of the split
    if (data.get("personas") or {}).get("source") == "generate":
        groups = [
            (
                inputs.persona_counts.get(s, 0),
                _render(pset, "persona_generation", seed_a=_x(inputs.seed_chars(s)), seed_b=_x(inputs.seed_chars(s))),
            )
            for s in splits
        ]
        steps.append(("personas", "persona_generator", groups, "one per generated persona"))
    else:
        steps.append(("personas", "persona_generator", [], "personas come from a file: no calls"))
    if data.get("names") == "llm":
        groups = [
            (
                inputs.persona_counts.get(s, 0),
                _render(pset, "name_extraction", persona=_x(inputs.mean_persona_chars(s))),
            )
            for s in splits
        ]
        steps.append(("names", "persona_generator", groups, "one name extraction per persona (names: llm)"))
    else:
        steps.append(("names", "persona_generator", [], f"names: {data.get('names', 'regex')}: no calls"))
    if (data.get("oracle") or {}).get("source") == "file":
        steps.append(("oracle", "oracle", [], "gold responses come from a file (data.oracle): no calls"))
    else:
        groups = [
            (
                inputs.task_counts.get(s, 0) * inputs.persona_counts.get(s, 0),
                _render(pset, "oracle", persona=_x(inputs.mean_persona_chars(s)), task=_x(inputs.mean_task_chars(s))),
            )
            for s in splits
        ]
        steps.append(("oracle", "oracle", groups, "one per persona-task pair of " + "+".join(splits)))
    judge_calls, what = cost_judge.judge_calls(config, inputs.task_counts, inputs.persona_counts)
    answer = _x(max_tokens(config, "answerer", 256) * CHARS_PER_TOKEN)
    judge_prompt = _render(
        pset,
        "judge",
        persona=_x(inputs.mean_persona_chars("test")),
        task=_x(inputs.mean_task_chars("test")),
        response_a=answer,
        response_b=answer,
    )
    ev = config.get("evaluation") or {}
    trials = int(ev.get("trials") or 1)
    if trials > 1:
        what += f" x {trials} trials (evaluation.trials)"
    panel = list(ev.get("judges") or ["judge"])
    for role in panel:
        steps.append(("judge", role, [(judge_calls * trials, judge_prompt)], what))
    if (config.get("evaluation") or {}).get("specificity_rating"):
        prompt = _render(pset, "specificity", task=_x(inputs.mean_task_chars("test")))
        n = inputs.task_counts.get("test", 0)
        steps.append(
            ("specificity", "judge", [(n, prompt)], "one rating per test task (evaluation.specificity_rating)")
        )
    audit = ev.get("roleplayer_audit") or {}
    if audit.get("judge"):
        steps.append(cost_judge.audit_step(config, inputs, pset, audit))

    rows = []
    for step, role, groups, what in steps:
        if role not in wanted and not (role.startswith(JUDGE_ROLE_PREFIX) and "judge" in wanted):
            continue
        row = _price_step(config, step, role, groups, what, all_backends, notes)
        if row is not None:
            rows.append(row)
    notes.append(f"token counts: {tokenizer_name()}; output counted at n x max_tokens (upper bound)")
    billed = [r for r in rows if r["billed"] or all_backends]
    return {
        "splits": splits,
        "tasks": {s: inputs.task_counts.get(s, 0) for s in SPLITS},
        "personas": {s: inputs.persona_counts.get(s, 0) for s in SPLITS},
        "rows": rows,
        "total_calls": sum(r["calls"] for r in rows if r["billed"]),
        "total_usd": round(sum(r["cost_usd"] for r in billed), 2),
        "total_usd_online": round(sum(r["usd_online"] for r in billed), 2),
        "total_usd_batch": round(sum(r["usd_batch"] for r in billed), 2),
        "budget_usd": (config.get("api") or {}).get("budget_usd"),
        "variants": variant_prices(config, inputs, judge_prompt, panel, trials, all_backends, notes)
        if "judge" in wanted
        else [],
        "notes": list(dict.fromkeys(notes)),
    }


def variant_prices(config, inputs, prompt, panel, trials, all_backends, notes) -> list[dict]:
    """Each win-rate variant (configured or one of the paper's six) priced alone: its judge calls with every
    judge of the panel, online and Batch, and the mode the config would use."""
    winrate = (config.get("evaluation") or {}).get("winrate") or {}
    configured = [v.name for v in variants.configured({"variants": winrate.get("variants") or []})]
    out = []
    for name in [*configured, *(v for v in paper.results()["winrates"] if v not in configured)]:
        v = variants.parse(name)
        alone = {**config, "evaluation": {**config["evaluation"], "winrate": {**winrate, "variants": [
            {"conversation": v.conversation, "answerer": v.answerer, "positions": v.positions}]}}}  # fmt: skip
        calls, _ = cost_judge.judge_calls(alone, inputs.task_counts, inputs.persona_counts)
        rows = [
            _price_step(config, "judge", role, [(calls * trials, prompt)], "", all_backends, notes) for role in panel
        ]
        rows = [r for r in rows if r is not None]
        billed = [r for r in rows if r["billed"] or all_backends]
        out.append(
            {
                "variant": name,
                "configured": name in configured,
                "calls": sum(r["calls"] for r in rows),
                "usd_online": round(sum(r["usd_online"] for r in billed), 2),
                "usd_batch": round(sum(r["usd_batch"] for r in billed), 2),
                "cost_usd": round(sum(r["cost_usd"] for r in billed), 2),
            }
        )
    return out


def _price_step(config, step, role, groups, what, all_backends, notes) -> dict | None:
    rcfg = (config.get("roles") or {}).get(role)
    if rcfg is None:
        notes.append(f"{step}: role '{role}' is not in the config; skipped")
        return None
    backend = rcfg.get("backend")
    options = {**(config.get("api") or {}), **(rcfg.get("options") or {})}
    model = _api_model_name(config, rcfg)
    sampling = rcfg.get("sampling") or {}
    n, mt = int(sampling.get("n") or 1), int(sampling.get("max_tokens") or 256)
    calls = sum(c for c, _ in groups)
    chars = sum(c * sum(len(m["content"]) for m in msgs) for c, msgs in groups)
    tin = sum(c * estimate_prompt_tokens(msgs) for c, msgs in groups)
    tout = calls * n * mt
    is_api = backend == "openai"
    priced = is_api or all_backends
    price = resolve_prices(model, options.get("prices")) if priced else None
    if priced and price is None and calls:
        notes.append(f"{step}: no price known for model '{model}'; set options.prices to get a USD figure")
    online, batch_usd = call_cost(tin, tout, price), call_cost(tin, tout, price, batch=True)
    batch = bool(options.get("batch")) and is_api
    return {
        "step": step,
        "role": role,
        "backend": backend,
        "model": model,
        "calls": calls,
        "what": what,
        "prompt_chars": chars,
        "prompt_chars_per_call": round(chars / calls) if calls else 0,
        "prompt_tokens_per_call": round(tin / calls) if calls else 0,
        "input_tokens": tin,
        "output_tokens_max": tout,
        "batch": batch,
        "price_per_1k": list(price) if price else None,
        "usd_online": round(online, 2) if priced else 0.0,
        "usd_batch": round(batch_usd, 2) if priced else 0.0,
        "cost_usd": round(batch_usd if batch else online, 2) if priced else 0.0,
        "billed": is_api,
    }


def format_table(est: dict, title: str = "API cost estimate") -> str:
    head = (
        f"{'step':<9} {'role':<18} {'backend':<8} {'model':<14} {'calls':>8} {'in tok/call':>11} "
        f"{'input tok':>12} {'output tok≤':>12} {'USD online':>11} {'USD batch':>10}"
    )
    splits = ", ".join(
        f"{s}={est['tasks'].get(s, 0)} tasks x {est['personas'].get(s, 0)} personas" for s in est["splits"]
    )
    lines = [title, "splits: " + splits, "", head, "-" * len(head)]
    for r in est["rows"]:
        if r["billed"] or r["usd_online"]:
            online = f"{r['usd_online']:,.2f}" + ("" if r["batch"] else " *")
            batch = f"{r['usd_batch']:,.2f}" + (" *" if r["batch"] else "")
        else:
            online = batch = "local"
        lines.append(
            f"{r['step']:<9} {r['role']:<18} {str(r['backend']):<8} {str(r['model'])[:14]:<14} {r['calls']:>8,} "
            f"{r['prompt_tokens_per_call']:>11,} {r['input_tokens']:>12,} {r['output_tokens_max']:>12,} "
            f"{online:>11} {batch:>10}"
        )
    lines.append("-" * len(head))
    lines.append(
        f"{'total (API roles)':<52} {est['total_calls']:>8,} {'':>11} {'':>12} {'':>12} "
        f"{est['total_usd_online']:>11,.2f} {est['total_usd_batch']:>10,.2f}"
    )
    lines.append(f"as configured (* = the mode each role uses): {est['total_usd']:,.2f} USD")
    if est.get("budget_usd") is not None:
        lines.append(f"budget_usd: {est['budget_usd']}")
    lines.append(f"USD batch = Batch API, billed at {BATCH_DISCOUNT:g} x the online price (results within 24 h)")
    if est.get("variants"):
        lines += ["", "win-rate variants, each priced alone (judge calls of the whole panel; variants of one answer "
                  "set share their calls):"]  # fmt: skip
        lines.append(
            f"  {'variant':<24} {'':<12} {'calls':>8} {'USD online':>11} {'USD batch':>10} {'as configured':>14}"
        )
        for v in est["variants"]:
            status = "configured" if v["configured"] else "opt-in"
            lines.append(
                f"  {v['variant']:<24} {status:<12} {v['calls']:>8,} {v['usd_online']:>11,.2f} {v['usd_batch']:>10,.2f}"
                f" {v['cost_usd']:>14,.2f}"
            )
    lines.append("")
    lines += [f"note: {n}" for n in est["notes"]]
    lines += [f"      {r['step']}: {r['what']}" for r in est["rows"]]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- helpers
def _api_model_name(config: dict, rcfg: dict) -> str:
    name = rcfg.get("model") or config.get("base_model") or "?"
    source = ((config.get("models") or {}).get(name) or {}).get("source") or {}
    return str(source.get("api", name)) if isinstance(source, dict) else str(name)


def _prompt_set(name: str | None, notes: list[str]):
    try:
        return load_prompt_set(name or "fixed_v1")
    except StargateError as exc:  # the prompt set is optional for an estimate
        notes.append(f"prompt set '{name}' not loaded ({exc}); template length assumed 1,000 characters")
        return None
