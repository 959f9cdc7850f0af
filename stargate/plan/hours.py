"""GPU-hours of a workflow's jobs: per job from its work (pairs, conversations, turns, examples) and the
throughput table (stargate/plan/throughput.yaml, with measured figures from docs/gpu-runs.md in place of
its assumptions), as configured and at the floor.

* As configured: each job holds all its GPUs for its whole wall time; its wall time is every model load it
  makes plus each role's work on that role's GPUs, one role after the other (the simulate job alternates
  Questioner and Roleplayer turns, so one role's GPUs wait while the other's work).
* Floor: every GPU busy: the work's GPU-seconds alone, plus one load per model per iteration (on the fewest
  GPUs that hold the model).

The jobs come from a dry-run of the workflow (`parse_dry_run`), so the DAG is the one Snakemake runs.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import CONDITIONS_CONTROL, train_split
from .fit import LOCAL_BACKENDS, gpu_sharing, role_models
from .memory import CHECKPOINTING_COMPUTE, GiB, min_gpus_to_fit
from .shapes import shape_of

TABLE = Path(__file__).resolve().parent / "throughput.yaml"
MEASURED_MARK = "# stargate plan throughput"


# -------------------------------------------------------------------------------------------- table
def load_table(measured: Path | None = None) -> dict[str, dict[str, Any]]:
    """The throughput table; a ```yaml block starting with `# stargate plan throughput` in `measured`
    (docs/gpu-runs.md) replaces the figures of the same keys, marked measured-here."""
    table = yaml.safe_load(TABLE.read_text(encoding="utf-8"))
    if measured is not None and measured.is_file():
        for block in re.findall(r"```yaml\n(.*?)```", measured.read_text(encoding="utf-8"), flags=re.S):
            if block.lstrip().startswith(MEASURED_MARK):
                for key, fig in (yaml.safe_load(block) or {}).items():
                    table[key] = {
                        **fig,
                        "kind": "measured-here",
                        "source": f"{measured.name}: {fig.get('source', '')}",
                    }
    return table


def rate(table: dict, key: str) -> float:
    """A figure of the table; `simulate.<role>.turnK` falls back to the highest turn the table has."""
    if key not in table and ".turn" in key:
        stem, k = key.rsplit(".turn", 1)
        turns = sorted(int(x.rsplit("turn", 1)[1]) for x in table if x.startswith(stem + ".turn"))
        key = f"{stem}.turn{max([t for t in turns if t <= int(k)] or turns[:1])}"
    return float(table[key]["value"])


# --------------------------------------------------------------------------------------------- jobs
@dataclass
class Job:
    rule: str
    wildcards: dict[str, str] = field(default_factory=dict)
    resources: dict[str, str] = field(default_factory=dict)
    threads: int | None = None

    def res_int(self, key: str) -> int:
        try:
            return int(float(self.resources.get(key, 0)))
        except ValueError:
            return 0


def parse_dry_run(text: str) -> list[Job]:
    """Every job block of `snakemake -n` output: its rule, wildcards, threads and resources."""
    jobs: list[Job] = []
    for line in text.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line)
        if m:
            jobs.append(Job(m.group(1)))
            continue
        if not jobs:
            continue
        m = re.match(r"^\s+(wildcards|resources|threads): (.*)$", line)
        if m:
            key, value = m.groups()
            if key == "threads":
                jobs[-1].threads = int(value)
                continue
            items = dict(item.partition("=")[::2] for item in value.split(", "))
            setattr(jobs[-1], key, items)
    return jobs


# --------------------------------------------------------------------------------------------- work
@dataclass
class Use:
    """One model use inside a job: the role's work in GPU-seconds, on how many of the job's GPUs."""

    role: str
    model: str  # the floor's load key: m<t>, m0, or the model's name
    shape_name: str | None
    gpu_seconds: float
    gpus: int


@dataclass
class JobHours:
    job: Job
    uses: list[Use]
    load_seconds: float
    wall_seconds: float
    gpus: int
    notes: list[str] = field(default_factory=list)

    @property
    def held(self) -> float:
        return self.wall_seconds * self.gpus

    @property
    def busy(self) -> float:
        return sum(u.gpu_seconds for u in self.uses)


class Workload:
    """Pairs per split, shards and turn shares of a config: the work behind each job."""

    def __init__(self, config: dict, root: Path):
        from ..stages.cost import _Inputs  # counts of tasks and personas per split, as `stargate cost` reads them

        self.config, self.root, self.notes = config, root, []
        inputs = _Inputs(config, root, self.notes)
        self.pairs = {s: inputs.task_counts.get(s, 0) * inputs.persona_counts.get(s, 0) for s in ("A", "B", "test")}
        sim = config["simulation"]
        lo, hi = int(sim["min_turns"]), int(sim["max_turns"])
        # the turn count of each pair is drawn uniformly from min..max: the share still open at turn k
        self.open_share = [1.0 if k <= lo else (hi - k + 1) / (hi - lo + 1) for k in range(1, hi + 1)]
        self.n = int(sim["conversations_per_pair"])

    def shards(self, split: str) -> int:
        s = self.config["simulation"]["shards"]
        return int(s[split] if isinstance(s, dict) else s)

    def shard_pairs(self, split: str, shard: int) -> int:
        total, n = self.pairs[split], self.shards(split)
        return total // n + (1 if shard < total % n else 0)

    def winrate_answers(self) -> int:
        """Pairs answered per answer set: pairs_per_group per turn-count group (or every test pair)."""
        per_group, test = self.config["evaluation"]["winrate"].get("pairs_per_group"), self.pairs["test"]
        sim = self.config["simulation"]
        groups = int(sim["max_turns"]) - int(sim["min_turns"]) + 1
        return test if per_group is None else min(int(per_group) * groups, test)

    def train_examples(self, t: int) -> float:
        tr = self.config["training"]
        pairs = self.pairs[train_split(t - 1)]
        per_pair = {"sft": int(self.config["top_k"]), "rwr": self.n}.get(tr["method"], 1)
        return pairs * per_pair * (1 - float(tr["validation_fraction"])) * float(tr["epochs"])


def _local(config: dict, role: str) -> bool:
    return config["roles"][role]["backend"] in LOCAL_BACKENDS


def job_uses(job: Job, w: Workload, table: dict) -> tuple[list[Use], list[str]]:
    """The model uses of one GPU job and their GPU-seconds of work."""
    cfg, wc, gpu = w.config, job.wildcards, job.res_int("gpu")
    t = int(wc.get("t", 0))
    mt = "m0" if t == 0 else f"m{t}"
    base = cfg["base_model"]
    if job.rule == "simulate":
        pairs = w.shard_pairs(wc["split"], int(wc["shard"]))
        open_n = [pairs * w.n * s for s in w.open_share]
        roles = [r for r in ("questioner", "roleplayer") if _local(cfg, r)]
        qg = job.res_int("questioner_gpu")
        # gpu_sharing shared_memory / sleep: both engines on all the job's GPUs (stargate/stages/simulate.py)
        split = len(roles) == 2 and 0 < qg < gpu and gpu_sharing(cfg) == "separate"
        uses = []
        for role in roles:
            g = (qg if role == "questioner" else gpu - qg) if split else gpu
            secs = sum(n / rate(table, f"simulate.{role}.turn{k}") for k, n in enumerate(open_n, 1))
            model = mt if role == "questioner" else role_models(cfg, role)[0]
            uses.append(Use(role, model, base if role == "questioner" else model, secs, g))
        return uses, []
    if job.rule in ("score", "score_control"):
        per_pair = 1 if wc["condition"] in CONDITIONS_CONTROL else w.n
        items = w.pairs[wc["split"]] * per_pair
        return ([Use("scorer", "m0", base, items / rate(table, "score"), gpu)] if _local(cfg, "scorer") else []), []
    if job.rule in ("regularize", "winrate_answer"):
        if not _local(cfg, "answerer"):
            return [], []
        items = w.pairs[wc["split"]] * int(cfg["top_k"]) if job.rule == "regularize" else w.winrate_answers()
        model = mt if wc.get("answerer", "mt") == "mt" else "m0"
        return [Use("answerer", model, base, items / rate(table, "answer"), gpu)], []
    if job.rule == "train":
        secs = w.train_examples(t) / rate(table, "train")
        if cfg["training"].get("gradient_checkpointing"):
            secs *= CHECKPOINTING_COMPUTE
        return [Use("train", f"train m{t}", base, secs, gpu)], []
    return [], [f"{job.rule}: no throughput figure; its GPU time is not counted"]


def load_seconds(shape_name: str | None, config: dict, root: Path, table: dict) -> float:
    shape = shape_of(shape_name, config, root) if shape_name else None
    weights_gb = shape.weight_bytes() / 1e9 if shape else 0.0
    return rate(table, "load.fixed_s") + weights_gb / rate(table, "load.read_gb_per_s")


def sleep_seconds(job: Job, uses: list[Use], w: Workload, table: dict) -> float:
    """gpu_sharing sleep: each turn after the first, each engine wakes once and sleeps once (level 1: its
    weights to host memory and back, every GPU moving its shard at once)."""
    if job.rule != "simulate" or gpu_sharing(w.config) != "sleep" or len(uses) != 2:
        return 0.0
    secs = 0.0
    for u in uses:
        shape = shape_of(u.shape_name, w.config, w.root) if u.shape_name else None
        per_gpu_gb = shape.weight_bytes() / 1e9 / max(u.gpus, 1) if shape else 0.0
        secs += 2 * per_gpu_gb / rate(table, "sleep.offload_gb_per_s")
    return secs * max(int(w.config["simulation"]["max_turns"]) - 1, 0) + secs / 2


def job_hours(job: Job, w: Workload, table: dict) -> JobHours | None:
    gpu = job.res_int("gpu")
    if gpu <= 0:
        return None
    uses, notes = job_uses(job, w, table)
    loads = sum(load_seconds(u.shape_name, w.config, w.root, table) for u in uses) + sleep_seconds(job, uses, w, table)
    wall = loads + sum(u.gpu_seconds / max(u.gpus, 1) for u in uses)
    return JobHours(job, uses, loads, wall, gpu, notes)


@dataclass
class Hours:
    per_rule: dict[str, dict[str, float]]
    floor_loads: float
    floor_load_list: list[tuple[str, str, int, float]]
    notes: list[str]
    jobs: list[JobHours]

    @property
    def held(self) -> float:
        return sum(r["held"] for r in self.per_rule.values())

    @property
    def floor(self) -> float:
        return sum(r["busy"] for r in self.per_rule.values()) + self.floor_loads


def estimate(jobs: list[Job], config: dict, root: Path, table: dict, card_gb: float | None) -> Hours:
    w = Workload(config, root)
    per_rule: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    done: list[JobHours] = []
    notes = [n for n in dict.fromkeys(w.notes) if "unknown" in n]  # counts, not the text lengths `cost` assumes
    floor_keys: dict[tuple[str, str], tuple[str | None, str, int]] = {}
    for job in jobs:
        jh = job_hours(job, w, table)
        if jh is None:
            continue
        done.append(jh)
        row = per_rule[job.rule]
        row["jobs"] += 1
        row["loads"] += len(jh.uses)
        row["wall"] += jh.wall_seconds
        row["held"] += jh.held
        row["busy"] += jh.busy
        notes += jh.notes
        for u in jh.uses:
            key = (job.wildcards.get("t", "0"), u.model)
            floor_keys.setdefault(key, (u.shape_name, u.role, u.gpus))
    floor_list = []
    for (t, model), (shape_name, role, job_gpus) in sorted(floor_keys.items()):
        gpus = job_gpus if role == "train" else 1  # each training process loads its own copy
        shape = shape_of(shape_name, config, root) if shape_name else None
        if shape is not None and card_gb and role != "train":
            options = config["roles"][role].get("options") or {}
            gpus = min_gpus_to_fit(shape, options, card_gb * GiB) or 1
        floor_list.append((t, model, gpus, load_seconds(shape_name, config, root, table)))
    floor_loads = sum(g * s for _, _, g, s in floor_list)
    return Hours({k: dict(v) for k, v in per_rule.items()}, floor_loads, floor_list, list(dict.fromkeys(notes)), done)
