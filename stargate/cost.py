"""Money and tokens spent on API calls: a ledger, a budget cap, and `stargate cost` (estimate before running).

Ledger: `<api cache dir>/ledger.jsonl`, append-only, one JSON object per line::

    {"ts": ..., "stage": "oracle", "model": "gpt-4", "kind": "paid" | "batch" | "cached", "calls": 1,
     "key": "<cache key>", "prompt_tokens": 412, "completion_tokens": 287, "cost_usd": 0.02958}

A paid call's line is written *before* its cache entry, so a kill in between can only over-count (the
rerun pays for that call again and says so), never under-count. Replays from the cache cost nothing and
are summarised as one `cached` line per generate() call. Appends are serialised with flock and a line left
half-written by a kill is skipped by readers.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from .errors import StargateError
from .log import get_logger

log = get_logger(__name__)

# USD per 1,000 tokens (input, output), list prices for the plain (non-batch) API. They change: set
# `prices` in the role options (or in `api:`) for a real run. gpt-4 is the price the original code
# hard-coded (gpt4.py: 0.03 / 0.06), i.e. what the paper paid for its Azure "gpt-4" deployment.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.00015, 0.0006),
    "gpt-4o": (0.0025, 0.01),
    "gpt-4.1-nano": (0.0001, 0.0004),
    "gpt-4.1-mini": (0.0004, 0.0016),
    "gpt-4.1": (0.002, 0.008),
    "gpt-4-turbo": (0.01, 0.03),
    "gpt-4-32k": (0.06, 0.12),
    "gpt-4": (0.03, 0.06),
    "gpt-3.5-turbo": (0.0005, 0.0015),
}
BATCH_DISCOUNT = 0.5  # the Batch API bills half the synchronous price
CHARS_PER_TOKEN = 4.0
MESSAGE_OVERHEAD_TOKENS = 4  # role markers and separators per chat message


# ---------------------------------------------------------------------------------------- prices
def resolve_prices(model: str, prices: Any = None) -> tuple[float, float] | None:
    """(input, output) USD per 1k tokens for `model`.

    `prices` may be {input_per_1k, output_per_1k}, or a mapping model name -> that dict. Without it,
    the built-in table is matched by the longest model-name prefix. None: unknown (costs count as 0).
    """
    if prices:
        if not isinstance(prices, dict):
            raise StargateError("option 'prices' must be {input_per_1k: X, output_per_1k: Y} (USD per 1,000 tokens)")
        if "input_per_1k" in prices or "output_per_1k" in prices:
            try:
                return float(prices.get("input_per_1k", 0.0)), float(prices.get("output_per_1k", 0.0))
            except (TypeError, ValueError):
                raise StargateError("option 'prices': input_per_1k and output_per_1k must be numbers") from None
        if model in prices:
            return resolve_prices(model, prices[model])
    for name in sorted(DEFAULT_PRICES, key=len, reverse=True):
        if model == name or model.startswith(name + "-") or model.startswith(name + "@"):
            return DEFAULT_PRICES[name]
    return None


def call_cost(
    prompt_tokens: int, completion_tokens: int, price: tuple[float, float] | None, batch: bool = False
) -> float:
    if price is None:
        return 0.0
    cost = prompt_tokens / 1000.0 * price[0] + completion_tokens / 1000.0 * price[1]
    return cost * (BATCH_DISCOUNT if batch else 1.0)


def estimate_tokens(text: str) -> int:
    """Token count of a text: tiktoken's cl100k_base when installed, else ~4 characters per token."""
    enc = _tiktoken()
    if enc is not None:
        return len(enc.encode(text, disallowed_special=()))
    return int(math.ceil(len(text) / CHARS_PER_TOKEN))


def estimate_prompt_tokens(messages: Sequence[dict]) -> int:
    return sum(estimate_tokens(str(m.get("content", ""))) + MESSAGE_OVERHEAD_TOKENS for m in messages) + 3


_ENC: Any = False


def _tiktoken():
    global _ENC
    if _ENC is False:
        try:
            import tiktoken  # optional, never a dependency

            _ENC = tiktoken.get_encoding("cl100k_base")
        except Exception:  # not installed, or no cached encoding file (no network)
            _ENC = None
    return _ENC


# ---------------------------------------------------------------------------------------- ledger
class Ledger:
    """Append-only JSONL of API spending, shared by every process that uses the same cache folder."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._offset = 0
        self._spent: dict[str, float] = defaultdict(float)
        self._bad_lines = 0

    def append(self, record: dict) -> None:
        rec = {"ts": round(time.time(), 3), **record}
        line = (json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # a previous writer was killed mid-line: keep our line whole
            os.write(fd, line)
            os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def records(self) -> list[dict]:
        if not self.path.exists():
            return []
        out = []
        with self.path.open("rb") as fh:
            for raw in fh:
                rec = _parse_line(raw)
                if rec is not None:
                    out.append(rec)
        return out

    def spent(self, stage: str | None = None) -> float:
        """USD recorded so far (all stages, or one). Reads only what was appended since the last call."""
        if self.path.exists():
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
            end = data.rfind(b"\n") + 1  # leave a trailing partial line for the next read
            for raw in data[:end].splitlines():
                rec = _parse_line(raw)
                if rec is None:
                    if raw.strip():
                        self._bad_lines += 1
                    continue
                cost = float(rec.get("cost_usd") or 0.0)
                self._spent["*"] += cost
                self._spent[str(rec.get("stage"))] += cost
            self._offset += end
        return self._spent["*" if stage is None else stage]

    def summary(self) -> dict[str, dict[str, float]]:
        """Per stage: paid/batch/cached calls, tokens and USD."""
        out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for rec in self.records():
            s = out[str(rec.get("stage"))]
            kind = rec.get("kind", "paid")
            s[f"{kind}_calls"] += rec.get("calls", 1)
            s["prompt_tokens"] += rec.get("prompt_tokens", 0) if kind != "cached" else 0
            s["completion_tokens"] += rec.get("completion_tokens", 0) if kind != "cached" else 0
            s["cost_usd"] += float(rec.get("cost_usd") or 0.0)
        return {k: dict(v) for k, v in out.items()}


def _parse_line(raw: bytes) -> dict | None:
    try:
        rec = json.loads(raw)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) else None


class Budget:
    """Stops new calls once spent (from the ledger) + in-flight estimates + the next estimate > limit."""

    def __init__(self, ledger: Ledger, limit_usd: float | None, stage: str | None = None):
        self.ledger, self.limit, self.stage = ledger, limit_usd, stage
        self.reserved = 0.0

    def try_reserve(self, estimate_usd: float) -> bool:
        if self.limit is None:
            return True
        if self.spent() + self.reserved + estimate_usd > self.limit + 1e-12:
            return False
        self.reserved += estimate_usd
        return True

    def release(self, estimate_usd: float) -> None:
        if self.limit is not None:
            self.reserved = max(0.0, self.reserved - estimate_usd)

    def spent(self) -> float:
        return self.ledger.spent(self.stage)


# -------------------------------------------------------------------------------------- estimate
ESTIMATED_ROLES = ("oracle", "persona_generator", "judge")
SPLITS = ("A", "B", "test")
TYPICAL_TASK_CHARS = 51  # mean of Dahoas/instruct-human-assistant-prompt rows 0-549 (reference data)
TYPICAL_SEED_PERSONA_CHARS = 624  # mean of the 24 rendered PRODIGy seed personas


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
        raise StargateError(f"{path}: config file does not exist")
    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    est = estimate(config, base_dir=Path.cwd(), roles=roles, all_backends=args.all_backends)
    if args.json:
        print(json.dumps(est, indent=2))
    else:
        print(format_table(est, title=f"API cost estimate for {path}"))
    if args.ledger:
        from .backends.cache import resolve_cache_dir

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


def estimate(
    config: dict, base_dir: Path | None = None, roles: Iterable[str] = ESTIMATED_ROLES, all_backends: bool = False
) -> dict:
    """Calls, tokens and USD that `config` will spend on the API-backed roles, before anything runs.

    Input tokens are measured on the real prompt texts where they exist (task/persona files, the prompt
    set's templates); generated text that does not exist yet (personas from `generate`, the answers the
    judge compares) is counted at its role's max_tokens, so the figure is an upper bound. Output tokens are
    counted at n x max_tokens per call (also an upper bound).
    """
    base_dir = base_dir or Path.cwd()
    notes: list[str] = []
    data = config.get("data") or {}
    splits = _splits_used(config)
    tasks = _load_tasks(data.get("tasks") or {}, base_dir, notes)
    personas, persona_counts = _load_personas(data.get("personas") or {}, base_dir, config, notes)
    role_cfgs = config.get("roles") or {}
    pset = _prompt_set(config.get("prompts"), notes)
    api = config.get("api") or {}

    task_counts = {
        s: len(tasks.get(s, [])) if isinstance(tasks.get(s), list) else int(tasks.get(s) or 0) for s in SPLITS
    }
    task_texts = [t for s in SPLITS if isinstance(tasks.get(s), list) for t in tasks[s] if isinstance(t, str)]
    mean_task = _mean_len(task_texts, TYPICAL_TASK_CHARS)

    def max_tok(role: str, default: int) -> int:
        return int(((role_cfgs.get(role) or {}).get("sampling") or {}).get("max_tokens") or default)

    gen_persona_chars = max_tok("persona_generator", 400) * CHARS_PER_TOKEN
    mean_persona = _mean_len([p for s in SPLITS for p in (personas.get(s) or [])], gen_persona_chars)

    rows = []
    for role in roles:
        rcfg = role_cfgs.get(role)
        if rcfg is None:
            notes.append(f"role '{role}' is not in the config; skipped")
            continue
        backend = rcfg.get("backend")
        options = {**api, **(rcfg.get("options") or {})}
        model = _api_model_name(config, rcfg)
        sampling = rcfg.get("sampling") or {}
        n = int(sampling.get("n") or 1)
        max_tokens = int(sampling.get("max_tokens") or 256)
        if role == "oracle":
            calls = sum(task_counts[s] * persona_counts.get(s, 0) for s in splits)
            prompt = _render(pset, "oracle", persona="x" * int(mean_persona), task="x" * int(mean_task))
            what = "one per persona-task pair of " + "+".join(splits)
        elif role == "persona_generator":
            gen = (data.get("personas") or {}).get("source") == "generate"
            calls = sum(persona_counts.get(s, 0) for s in splits) if gen else 0
            if (data.get("names") == "llm") and persona_counts:
                calls += sum(persona_counts.get(s, 0) for s in splits)
                notes.append(
                    "persona_generator: names: llm adds one name-extraction call per persona (priced like a persona call)"
                )
            seed = "x" * int(_seed_persona_chars(data.get("personas") or {}, base_dir))
            prompt = _render(pset, "persona_generation", seed_a=seed, seed_b=seed)
            what = "one per generated persona" if gen else "personas come from a file: no calls"
        elif role == "judge":
            calls, what = _judge_calls(config, task_counts, persona_counts, notes)
            answer = "x" * int(max_tok("answerer", 256) * CHARS_PER_TOKEN)
            prompt = _render(
                pset,
                "judge",
                persona="x" * int(mean_persona),
                task="x" * int(mean_task),
                response_a=answer,
                response_b=answer,
            )
        else:
            notes.append(f"role '{role}': no call-count rule; skipped")
            continue
        prompt_tokens = estimate_prompt_tokens(prompt)
        is_api = backend == "openai"
        price = resolve_prices(model, options.get("prices")) if (is_api or all_backends) else None
        if (is_api or all_backends) and price is None:
            notes.append(f"{role}: no price known for model '{model}'; set options.prices to get a USD figure")
        batch = bool(options.get("batch")) and is_api
        tin, tout = calls * prompt_tokens, calls * n * max_tokens
        rows.append(
            {
                "role": role,
                "backend": backend,
                "model": model,
                "calls": calls,
                "what": what,
                "prompt_tokens_per_call": prompt_tokens,
                "input_tokens": tin,
                "output_tokens_max": tout,
                "batch": batch,
                "price_per_1k": list(price) if price else None,
                "cost_usd": round(call_cost(tin, tout, price, batch), 2) if (is_api or all_backends) else 0.0,
                "billed": is_api,
            }
        )
    tok = "tiktoken cl100k_base" if _tiktoken() is not None else f"~{CHARS_PER_TOKEN:g} characters per token"
    notes.append(f"token counts: {tok}; output counted at n x max_tokens (upper bound)")
    return {
        "splits": splits,
        "tasks": task_counts,
        "personas": persona_counts,
        "rows": rows,
        "total_calls": sum(r["calls"] for r in rows if r["billed"]),
        "total_usd": round(sum(r["cost_usd"] for r in rows if r["billed"] or all_backends), 2),
        "budget_usd": api.get("budget_usd"),
        "notes": notes,
    }


def format_table(est: dict, title: str = "API cost estimate") -> str:
    head = f"{'role':<18} {'backend':<8} {'model':<16} {'calls':>8} {'in tok/call':>11} {'input tok':>12} {'output tok≤':>12} {'USD':>10}"
    lines = [
        title,
        "splits: "
        + ", ".join(
            f"{s}={est['tasks'].get(s, 0)} tasks x {est['personas'].get(s, 0)} personas" for s in est["splits"]
        ),
        "",
        head,
        "-" * len(head),
    ]
    for r in est["rows"]:
        usd = f"{r['cost_usd']:,.2f}" + (" (b)" if r["batch"] else "") if (r["billed"] or r["cost_usd"]) else "local"
        lines.append(
            f"{r['role']:<18} {str(r['backend']):<8} {str(r['model'])[:16]:<16} {r['calls']:>8,} "
            f"{r['prompt_tokens_per_call']:>11,} {r['input_tokens']:>12,} {r['output_tokens_max']:>12,} {usd:>10}"
        )
    lines.append("-" * len(head))
    lines.append(
        f"{'total (API roles)':<44} {est['total_calls']:>8,} {'':>11} {'':>12} {'':>12} {est['total_usd']:>10,.2f}"
    )
    if est.get("budget_usd") is not None:
        lines.append(f"budget_usd: {est['budget_usd']}")
    lines.append("")
    lines += [f"note: {n}" for n in est["notes"]]
    lines += [f"      {r['role']}: {r['what']}" for r in est["rows"]]
    if any(r["batch"] for r in est["rows"]):
        lines.append(f"(b) = Batch API, billed at {BATCH_DISCOUNT:g} x the synchronous price")
    return "\n".join(lines)


def _splits_used(config: dict) -> list[str]:
    t = int(config.get("iterations") or 1)
    train = ["A" if i % 2 == 0 else "B" for i in range(t)]
    return [s for s in ("A", "B") if s in train] + ["test"]


def _load_tasks(spec: dict, base_dir: Path, notes: list[str]) -> dict[str, Any]:
    source = spec.get("source")
    if source == "file" or (source is None and spec.get("path")):
        obj = _read_json(base_dir, spec.get("path"), notes, "data.tasks")
        return obj if isinstance(obj, dict) else {}
    rows = spec.get("rows")
    if isinstance(rows, dict):
        notes.append(
            f"data.tasks: {source or 'hf_dataset'} is not read for the estimate; task length assumed "
            f"{TYPICAL_TASK_CHARS} characters (mean of the paper's task rows)"
        )
        return {s: int(r[1]) - int(r[0]) for s, r in rows.items() if isinstance(r, list | tuple) and len(r) == 2}
    notes.append("data.tasks: no file and no rows; task counts unknown (0)")
    return {}


def _load_personas(spec: dict, base_dir: Path, config: dict, notes: list[str]) -> tuple[dict, dict]:
    source = spec.get("source")
    if source == "generate":
        counts = {s: int(c) for s, c in (spec.get("count") or {}).items()}
        if not counts:
            notes.append("data.personas.count missing; persona counts unknown (0)")
        mt = int(
            (((config.get("roles") or {}).get("persona_generator") or {}).get("sampling") or {}).get("max_tokens")
            or 400
        )
        notes.append(f"personas are generated: their length is counted at persona_generator max_tokens ({mt} tokens)")
        return {}, counts
    obj = _read_json(base_dir, spec.get("path"), notes, "data.personas")
    if not isinstance(obj, dict):
        return {}, {}
    return (
        {s: [str(p) for p in v] for s, v in obj.items() if isinstance(v, list)},
        {s: len(v) for s, v in obj.items() if isinstance(v, list)},
    )


def _seed_persona_chars(spec: dict, base_dir: Path) -> float:
    """Mean length of the few-shot seed personas (data.personas.seeds), or the PRODIGy seeds' mean."""
    rel = spec.get("seeds")
    p = (Path(rel) if Path(rel).is_absolute() else base_dir / rel) if rel else None
    if p is None or not p.exists():
        return TYPICAL_SEED_PERSONA_CHARS
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except ValueError:
        return TYPICAL_SEED_PERSONA_CHARS
    seeds = obj.get("seed_personas", obj) if isinstance(obj, dict) else obj
    texts = list(seeds.values()) if isinstance(seeds, dict) else seeds
    texts = [t for t in texts if isinstance(t, str)]
    return _mean_len(texts, TYPICAL_SEED_PERSONA_CHARS)


def _judge_calls(config: dict, tasks: dict, personas: dict, notes: list[str]) -> tuple[int, str]:
    sim = config.get("simulation") or {}
    groups = int(sim.get("max_turns", 3)) - int(sim.get("min_turns", 1)) + 1
    win = (config.get("evaluation") or {}).get("winrate") or {}
    per_group = win.get("pairs_per_group")
    comparisons = int(config.get("iterations") or 1)  # m1..mT, each against m0
    test_pairs = tasks.get("test", 0) * personas.get("test", 0)
    if per_group is None:
        per_iter = test_pairs
        what = f"every test pair ({test_pairs}) x {comparisons} comparisons (m1..m{comparisons} vs m0)"
    else:
        per_iter = min(int(per_group) * groups, test_pairs) if test_pairs else int(per_group) * groups
        what = f"{per_group} pairs x {groups} turn groups x {comparisons} comparisons (m1..m{comparisons} vs m0)"
    return per_iter * comparisons, what


def _api_model_name(config: dict, rcfg: dict) -> str:
    name = rcfg.get("model") or config.get("base_model") or "?"
    source = ((config.get("models") or {}).get(name) or {}).get("source") or {}
    return str(source.get("api", name)) if isinstance(source, dict) else str(name)


def _prompt_set(name: str | None, notes: list[str]):
    try:
        from .prompts import load_prompt_set

        return load_prompt_set(name or "fixed_v1")
    except Exception as exc:  # the prompt set is optional for an estimate
        notes.append(f"prompt set '{name}' not loaded ({exc}); template length assumed 1,000 characters")
        return None


def _render(pset, kind: str, **fields: str) -> list[dict]:
    if pset is not None:
        try:
            return getattr(pset, kind)(**fields)
        except Exception:
            pass
    return [
        {"role": "system", "content": "x" * 300},
        {"role": "user", "content": "x" * 700 + "".join(fields.values())},
    ]


def _read_json(base_dir: Path, rel: str | None, notes: list[str], what: str) -> Any:
    if not rel:
        notes.append(f"{what}: no path; counts unknown (0)")
        return None
    p = Path(rel) if Path(rel).is_absolute() else base_dir / rel
    if not p.exists():
        notes.append(f"{what}: {p} does not exist; counts unknown (0)")
        return None
    return json.loads(p.read_text(encoding="utf-8"))


def _mean_len(texts: list[str], default: float) -> float:
    return sum(len(t) for t in texts) / len(texts) if texts else float(default)
