"""Efficiency beside quality: what one test conversation of a questioner took.

Per conversation (a record with `turns` [{role, text}]):
- questions = the number of Questioner turns;
- questioner_tokens, roleplayer_tokens = Σ tokens(text) over that role's turns, with `count_tokens` a
  tokenizer callable (text -> int, e.g. len(tok.encode(text))); without one, whitespace tokens,
  len(text.split()) (say so beside the figure: the `tokenizer` field is "whitespace").

Per questioner, money and GPU time are totals divided by conversations:
- dollars per conversation = Σ cost_usd of the ledger's conversation stages (Ledger.summary(): {stage:
  {"cost_usd", ...}}; by default questioner_turn and roleplayer_turn) / conversations;
- GPU-seconds per conversation = Σ_jobs s_job x gpus_job / conversations, s_job the wall seconds of the
  job's Snakemake benchmark TSV (column `s`; `benchmark_seconds`) and gpus_job the GPUs the job held.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from ..errors import StargateError

CONVERSATION_STAGES = ("questioner_turn", "roleplayer_turn")


def whitespace_tokens(text: str) -> int:
    return len((text or "").split())


def conversation(conv: dict, count_tokens: Callable[[str], int] | None = None) -> dict:
    """Questions asked and each role's tokens of one conversation."""
    count = count_tokens or whitespace_tokens
    out = {"questions": 0, "questioner_tokens": 0, "roleplayer_tokens": 0}
    for turn in conv["turns"]:
        role = turn["role"]
        if role not in ("questioner", "roleplayer"):
            raise StargateError(f"conversation {conv.get('pair')}: unknown turn role '{role}'")
        out["questions"] += role == "questioner"
        out[f"{role}_tokens"] += int(count(turn["text"] or ""))
    return out


def summarize(conversations: Sequence[dict], count_tokens: Callable[[str], int] | None = None) -> dict:
    """Mean (and median) questions and tokens per conversation over a questioner's conversations."""
    rows = [conversation(c, count_tokens) for c in conversations]
    out: dict = {"n_conversations": len(rows), "tokenizer": "callable" if count_tokens else "whitespace"}
    for key in ("questions", "questioner_tokens", "roleplayer_tokens"):
        v = np.array([r[key] for r in rows], dtype=float)
        out[f"mean_{key}"] = float(v.mean()) if len(v) else None
        out[f"median_{key}"] = float(np.median(v)) if len(v) else None
    return out


def ledger_dollars(summary: Mapping[str, Mapping[str, float]], stages: Iterable[str] = CONVERSATION_STAGES) -> float:
    """Σ cost_usd of the given stages in a ledger summary (Ledger.summary())."""
    return float(sum(float((summary.get(s) or {}).get("cost_usd", 0.0)) for s in stages))


def benchmark_seconds(tsv: str) -> float:
    """Wall seconds of one Snakemake benchmark TSV's text (column `s`; the last row when repeated)."""
    lines = [ln for ln in tsv.splitlines() if ln.strip()]
    if len(lines) < 2:
        raise StargateError("benchmark file: expected a header and a row")
    header = lines[0].split("\t")
    if "s" not in header:
        raise StargateError(f"benchmark file: no column 's' in header {header}")
    return float(lines[-1].split("\t")[header.index("s")])


def gpu_seconds(jobs: Iterable[tuple[float, float]]) -> float:
    """Σ seconds x GPUs over (seconds, gpus) per job."""
    return float(sum(float(s) * float(g) for s, g in jobs))


def per_conversation(total: float | None, n_conversations: int) -> float | None:
    """total / n_conversations; None without conversations or without a total."""
    return None if total is None or n_conversations <= 0 else float(total) / n_conversations


def costs(dollars: float | None, gpu_secs: float | None, n_conversations: int) -> dict:
    """Dollars and GPU-seconds per conversation from a questioner's totals."""
    return {
        "n_conversations": n_conversations,
        "dollars_total": dollars,
        "gpu_seconds_total": gpu_secs,
        "dollars_per_conversation": per_conversation(dollars, n_conversations),
        "gpu_seconds_per_conversation": per_conversation(gpu_secs, n_conversations),
    }
