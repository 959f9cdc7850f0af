"""`stargate plan` (stargate/plan/): GPU memory per job kind and GPU-hours before submitting (issue 20).

The memory formulas are checked against published figures (the paper models' bf16 weights, the 16 bytes per
parameter of mixed-precision AdamW, ZeRO's per-GPU shares) and against the measured peak of a small model's
training step on CPU (torch's MemTracker: the live tensors of the step, by category). The paper config must fit
2 x 80 GB with its numerics unchanged, and say so where the profile says it; a config that does not fit stops
the dry-run naming the job, the figure and the fix; a run without a card size is never checked.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stargate.config import load_config
from stargate.plan import memory
from stargate.plan.fit import check_fit, plan_fit, resources_from, resources_of_profile, resources_of_workflow
from stargate.plan.hours import Job, Workload, estimate, job_hours, load_table, parse_dry_run
from stargate.plan.memory import GiB, training_memory, vllm_memory
from stargate.plan.shapes import Shape, shape_of

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "config" / "paper.yaml"
SLURM = REPO / "profiles" / "slurm" / "config.yaml"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}


@pytest.fixture(scope="module")
def paper():
    return load_config(PAPER)


@pytest.fixture(scope="module")
def mistral(paper) -> Shape:
    return shape_of("mistral-7b-instruct-v0.2", paper, REPO)


@pytest.fixture(scope="module")
def mixtral(paper) -> Shape:
    return shape_of("mixtral-8x7b-instruct-v0.1", paper, REPO)


def slurm_profile() -> dict:
    return yaml.safe_load(SLURM.read_text())


# ----------------------------------------------------------------------------- published figures
def test_paper_models_bf16_weights_match_published_sizes(mistral, mixtral):
    # Mistral-7B: 7.24 B parameters (model card), 14.5 GB in bf16; Mixtral-8x7B: 46.7 B, about 93 GB in bf16
    assert mistral.params == 7_241_732_096
    assert mistral.weight_bytes() / 1e9 == pytest.approx(14.5, abs=0.05)
    assert mixtral.params == 46_702_792_704
    assert mixtral.weight_bytes() / 1e9 == pytest.approx(93.4, abs=0.1)
    # each shipped config.json names where its figures come from
    assert "huggingface.co/mistralai/Mistral-7B-Instruct-v0.2" in mistral.source
    assert "huggingface.co/mistralai/Mixtral-8x7B-Instruct-v0.1" in mixtral.source
    # K and V of 32 layers x 8 KV heads x 128 dims in bf16: 128 KiB per token on one GPU, half on each of 2
    assert mistral.kv_bytes_per_token() == 131072 and mixtral.kv_bytes_per_token(tp=2) == 65536


def per_param(mem, shape: Shape, *names) -> float:
    return sum(t.bytes for t in mem.terms if t.name in names) / shape.params


def test_training_states_per_parameter_match_known_breakdowns(mistral):
    states = ("weights", "gradients", "AdamW states")
    spec = {"method": "sft", "per_device_batch_size": 1, "max_length": 16}
    # mixed-precision AdamW without sharding: fp32 weights, gradients and two moments = 16 bytes per parameter
    mixed = training_memory(mistral, {**spec, "master_weights": "fp32", "bf16": True}, 1)
    assert per_param(mixed, mistral, *states) == pytest.approx(16)
    # the paper's pure bf16: 2 + 2 + 4 = 8 bytes per parameter, 58 GB for Mistral-7B
    pure = training_memory(mistral, {**spec, "master_weights": "bf16", "bf16": True}, 1)
    assert per_param(pure, mistral, *states) == pytest.approx(8)
    assert sum(t.bytes for t in pure.terms if t.name in states) / 1e9 == pytest.approx(57.9, abs=0.1)
    # ZeRO (Rajbhandari et al. 2020, §3): stage 2 = 2 + (2 + 12) / N, stage 3 = (2 + 2 + 12) / N bytes per parameter
    for n in (2, 4, 8):
        z2 = training_memory(mistral, {**spec, "master_weights": "fp32", "bf16": True, "deepspeed": "zero2"}, n)
        z3 = training_memory(mistral, {**spec, "master_weights": "fp32", "bf16": True, "deepspeed": "zero3"}, n)
        assert per_param(z2, mistral, *states) == pytest.approx(2 + 14 / n)
        assert per_param(z3, mistral, *states) == pytest.approx(16 / n)
    # DDP keeps a second copy of every gradient in its buckets, only with more than one process
    ddp = training_memory(mistral, {**spec, "master_weights": "bf16", "bf16": True}, 2)
    assert per_param(ddp, mistral, "DDP gradient buckets") == pytest.approx(2)
    assert per_param(pure, mistral, "DDP gradient buckets") == 0


# ----------------------------------------------------------------------------- measured on CPU
def _mistral(h, layers, heads, kv, inter, vocab):
    from transformers import MistralConfig

    return MistralConfig(
        hidden_size=h, num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv,
        intermediate_size=inter, vocab_size=vocab, max_position_embeddings=4096, tie_word_embeddings=False,
        attn_implementation="sdpa", torch_dtype="bfloat16",
    )  # fmt: skip


def measured_step_peak(cfg, batch: int, seq: int, checkpointing: bool, foreach: bool) -> int:
    """Peak bytes of live tensors over two optimizer steps of two micro-batches each (pure bf16, AdamW), as
    torch's MemTracker sees them: parameters, gradients, optimizer states, activations and temporaries."""
    torch = pytest.importorskip("torch")
    try:
        from torch.distributed._tools.mem_tracker import MemTracker
    except ImportError:
        pytest.skip("this torch has no MemTracker")
    from transformers import MistralForCausalLM

    torch.manual_seed(0)
    model = MistralForCausalLM(cfg).to(torch.bfloat16)
    model.config.use_cache = False
    if checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x renamed it
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, foreach=foreach)
    ids = torch.randint(0, cfg.vocab_size, (batch, seq))
    tracker = MemTracker()
    tracker.track_external(model, opt)
    with tracker:
        for _ in range(2):
            for _ in range(2):  # gradient accumulation: the second micro-batch runs with gradients alive
                tracker.reset_mod_stats()
                loss = model(input_ids=ids, labels=ids).loss
                loss.backward()
                del loss
            opt.step()
            opt.zero_grad(set_to_none=True)
    return tracker.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"]


def planned_step_peak(cfg, batch: int, seq: int, checkpointing: bool) -> float:
    shape = Shape.from_config(cfg.to_dict(), "tiny", "test")
    spec = {
        "method": "sft", "master_weights": "bf16", "bf16": True, "deepspeed": None,
        "per_device_batch_size": batch, "max_length": seq, "gradient_checkpointing": checkpointing,
    }  # fmt: skip
    return training_memory(shape, spec, gpus=1).peak - memory.CUDA_CONTEXT_GIB * GiB


@pytest.mark.parametrize("checkpointing", [False, True])
def test_activation_peak_matches_a_measured_training_step(checkpointing):
    """Activation-bound: a shape other than the one the per-token formula was read from."""
    cfg = _mistral(h=192, layers=3, heads=6, kv=2, inter=512, vocab=1024)
    measured = measured_step_peak(cfg, batch=2, seq=192, checkpointing=checkpointing, foreach=False)
    planned = planned_step_peak(cfg, batch=2, seq=192, checkpointing=checkpointing)
    assert planned == pytest.approx(measured, rel=0.10), (planned, measured)


@pytest.mark.parametrize("foreach", [False, True])
def test_optimizer_step_peak_matches_measured(monkeypatch, foreach):
    """Parameter-bound (16 tokens): the step's peak is the states plus the AdamW implementation's temporary,
    a copy of every second moment with foreach and one parameter's worth without."""
    cfg = _mistral(h=192, layers=3, heads=6, kv=2, inter=512, vocab=1024)
    monkeypatch.setattr(memory, "ADAMW_FOREACH", foreach)
    measured = measured_step_peak(cfg, batch=1, seq=16, checkpointing=False, foreach=foreach)
    planned = planned_step_peak(cfg, batch=1, seq=16, checkpointing=False)
    assert planned == pytest.approx(measured, rel=0.05), (planned, measured)


def test_shape_counts_the_parameters_transformers_builds():
    torch = pytest.importorskip("torch")
    from transformers import MistralForCausalLM, MixtralConfig, MixtralForCausalLM

    cfg = _mistral(h=64, layers=2, heads=4, kv=2, inter=96, vocab=500)
    with torch.device("meta"):
        dense = MistralForCausalLM(cfg)
        moe_cfg = MixtralConfig(
            hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=96,
            vocab_size=500, num_local_experts=4, num_experts_per_tok=2, tie_word_embeddings=False,
        )  # fmt: skip
        moe = MixtralForCausalLM(moe_cfg)
    assert Shape.from_config(cfg.to_dict(), "d", "t").params == sum(p.numel() for p in dense.parameters())
    assert Shape.from_config(moe_cfg.to_dict(), "m", "t").params == sum(p.numel() for p in moe.parameters())


def test_the_trainer_steps_adamw_one_parameter_at_a_time(tmp_path):
    """stargate/training/trainer_base.py's Trainer runs AdamW without foreach, as the plan assumes: the multi-tensor step's
    copy of every second moment (+13.5 GiB for Mistral-7B) would push the paper's train job past 80 GiB."""
    torch = pytest.importorskip("torch")
    from transformers import LlamaConfig, LlamaForCausalLM, TrainingArguments

    from stargate.training.trainer_base import trainer_class

    model = LlamaForCausalLM(
        LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=64)
    )
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", optim="adamw_torch")
    trainer = trainer_class(0.1, "micro_batch")(model=model, args=args)
    optimizer = trainer.create_optimizer()
    assert isinstance(optimizer, torch.optim.AdamW)
    assert [g["foreach"] for g in optimizer.param_groups] == [False] * len(optimizer.param_groups)
    assert memory.ADAMW_FOREACH is False


# ----------------------------------------------------------------------------- inference engines
def test_vllm_engine_fit_and_kv_cache(mistral, mixtral):
    card = 80 * GiB
    one = vllm_memory(mixtral, "roleplayer", {}, 1, card)
    assert not one.fits and "2 GPUs for this role" in one.problems[0]
    two = vllm_memory(mixtral, "roleplayer", {}, 2, card)
    assert two.fits and two.peak == pytest.approx(0.9 * card)
    assert two.extra["kv_tokens"] > 32768  # vLLM starts only when one max_model_len sequence fits
    q = vllm_memory(mistral, "questioner", {"gpu_memory_utilization": 0.9}, 1, card)
    weights = next(t.bytes for t in q.terms if t.name == "weights")
    assert weights == mistral.weight_bytes() and q.fits
    # a smaller card: Mistral-7B on a 16 GB card cannot hold a 32k-token sequence next to its weights
    assert not vllm_memory(mistral, "questioner", {}, 1, 16 * GiB).fits


def test_two_vllm_engines_sharing_the_simulate_gpus(paper):
    """questioner_gpu 0 puts both engines on all the job's GPUs: their gpu_memory_utilization must add up to <= 1."""
    from stargate.plan.fit import RuleResources, rule_memory

    shared = RuleResources(gpu=2, questioner_gpu=0, gpu_memory_gb=80)
    fit = rule_memory(paper, "simulate", shared, REPO)
    assert any("add up to 1.80 > 1" in p for p in fit.problems), fit.problems
    split = json.loads(json.dumps(paper))
    split["roles"]["questioner"]["options"]["gpu_memory_utilization"] = 0.2
    split["roles"]["roleplayer"]["options"]["gpu_memory_utilization"] = 0.75
    assert not rule_memory(split, "simulate", shared, REPO).problems  # Mistral in 16 GiB, Mixtral in 60 GiB per GPU


# ----------------------------------------------------------------------------- the paper config
def test_paper_config_fits_two_80gb_gpus_with_its_numerics(paper):
    tr = paper["training"]
    # the paper's effective batch, schedule and numerics (spec §5)
    assert tr["per_device_batch_size"] * tr["gradient_accumulation_steps"] == 64
    assert (tr["learning_rate"], tr["epochs"], tr["lr_scheduler"], tr["warmup_ratio"]) == (2e-5, 1, "cosine", 0.1)
    assert (tr["bf16"], tr["master_weights"], tr["loss_weighting"], tr["deepspeed"]) == (
        True, "bf16", "micro_batch", None,
    )  # fmt: skip
    assert tr["gradient_checkpointing"] is True
    res = resources_of_profile(slurm_profile())
    assert res["train"].gpu == 2 and res["train"].gpu_memory_gb == 80
    fits = {f.rule: f for f in plan_fit(paper, res, REPO)}
    assert not [p for f in fits.values() for p in f.problems]
    train = fits["train"].engines[0]
    assert train.peak / GiB == pytest.approx(71.0, abs=0.05)
    assert (train.card - train.peak) / GiB > 8  # margin: 10 % of the card
    # without checkpointing it would not: the activations of 4 x 1,024 tokens
    assert train.extra["peak_other_checkpointing"] / GiB == pytest.approx(94.6, abs=0.05)
    assert train.extra["foreach_step"] / GiB > 80  # nor with torch's multi-tensor AdamW step


def test_profile_and_config_say_the_same_about_training(paper):
    """The figure the plan computes is the one both files state; neither claims ZeRO any more."""
    text = PAPER.read_text()
    peak = f"{plan_fit(paper, resources_of_profile(slurm_profile()), REPO)[-1].engines[0].peak / GiB:.1f}"
    assert f"{peak} GiB of 80" in text and "gradient checkpointing" in text
    profile = SLURM.read_text()
    train_comment = profile[profile.index("# Full fine-tune of Mistral-7B") :].split("  train:")[0]
    assert f"{peak} GiB of 80" in train_comment
    assert "gradient checkpointing" in train_comment and "DDP" in train_comment
    assert "ZeRO" not in train_comment and paper["training"]["deepspeed"] is None
    local_gpu = (REPO / "profiles" / "local-gpu" / "config.yaml").read_text()
    assert f"{peak} GiB of 80" in local_gpu and "ZeRO-3" not in local_gpu


def snakemake_dry(args: list[str], cwd: Path, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-s", str(REPO / "Snakefile"), *args],
        cwd=cwd, capture_output=True, text=True, env={**ENV, **(extra_env or {})}, timeout=300,
    )  # fmt: skip


def test_a_job_that_cannot_fit_stops_the_dry_run_with_the_fix(tmp_path):
    cfg = yaml.safe_load(PAPER.read_text())
    cfg["training"]["gradient_checkpointing"] = False  # the paper config as it was: 94.6 GiB per GPU
    (tmp_path / "config").symlink_to(REPO / "config")
    bad = tmp_path / "unfit.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    proc = snakemake_dry(["--profile", str(SLURM.parent), "--configfile", str(bad)], tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "rule train (2 GPU(s) of 80 GB)" in out and "peak 94.6 GiB per GPU > 80 GiB" in out, out[-3000:]
    assert "fix: set training.gradient_checkpointing: true (peak 71.0 GiB" in out
    # without a card size (no profile: a CPU run) the same config is not checked
    plain = snakemake_dry(["--configfile", str(bad), "--quiet", "rules"], tmp_path)
    assert plain.returncode == 0, (plain.stdout + plain.stderr)[-3000:]


def test_check_fit_reads_snakemakes_resources_and_only_with_a_card(paper):
    from snakemake.resources import Resource

    class Settings:
        overwrite_resources = {
            "simulate": {"gpu": Resource("gpu", 2), "questioner_gpu": Resource("questioner_gpu", 1)}
        }
        default_resources = {
            "gpu_memory_gb": Resource("gpu_memory_gb", 80),
            "tmpdir": Resource("tmpdir", lambda: "/t"),
        }

    res = resources_of_workflow(Settings())
    assert (res["simulate"].gpu, res["simulate"].questioner_gpu, res["simulate"].gpu_memory_gb) == (2, 1, 80)
    with pytest.raises(Exception, match=r"rule simulate .*mixtral.* on 1 GPU\(s\).*questioner_gpu"):
        check_fit(paper, res, REPO)  # Mixtral on one 80 GB GPU
    Settings.default_resources = {}
    check_fit(paper, resources_of_workflow(Settings()), REPO)  # no card size: nothing checked


# ----------------------------------------------------------------------------- GPU-hours
def test_job_hours_as_configured_and_floor(paper):
    table = load_table(None)
    w = Workload(paper, REPO)
    assert w.pairs == {"A": 12500, "B": 12500, "test": 500}
    assert w.open_share == pytest.approx([1, 2 / 3, 1 / 3])
    job = Job("simulate", {"t": "0", "split": "A", "shard": "0"}, {"gpu": "3", "questioner_gpu": "1"})
    jh = job_hours(job, w, table)
    q, r = (u.gpu_seconds for u in jh.uses)
    convs = 3125 * 10
    assert q == pytest.approx(
        sum(convs * s / table[f"simulate.questioner.turn{k}"]["value"] for k, s in [(1, 1), (2, 2 / 3), (3, 1 / 3)])
    )
    # one role after the other, each on its own GPUs; the job holds all three for the whole time
    assert jh.wall_seconds == pytest.approx(jh.load_seconds + q / 1 + r / 2)
    assert jh.held == pytest.approx(3 * jh.wall_seconds) and jh.busy == pytest.approx(q + r)
    assert jh.held > jh.busy  # the idle GPUs of the alternating roles


def test_measured_figures_in_gpu_runs_replace_the_table(tmp_path):
    doc = tmp_path / "gpu-runs.md"
    doc.write_text(
        "# runs\n\n```yaml\n# stargate plan throughput\nscore: {value: 40.0, unit: conversations per GPU-second,"
        ' source: "H100, 2027-01-01, bench/backends.py"}\n```\n'
    )
    table = load_table(doc)
    assert table["score"]["value"] == 40.0 and table["score"]["kind"] == "measured-here"
    assert "gpu-runs.md" in table["score"]["source"]
    assert table["answer"]["kind"] == "paper-run"  # the others keep their source
    every = load_table(None)
    assert all(fig.get("source") and fig.get("kind") in ("paper-run", "assumption") for fig in every.values())


def test_stargate_plan_prints_fit_and_gpu_hours_for_the_paper():
    proc = subprocess.run(
        [sys.executable, "-m", "stargate", "plan", "--configfile", "config/paper.yaml", "--profile", "profiles/slurm"],
        cwd=REPO, capture_output=True, text=True, env=ENV, timeout=300,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "train: sft, pure bf16" in out and "fits (71.0 of 80 GiB" in out
    assert "roleplayer: mixtral-8x7b-instruct-v0.1 (vllm, TP 2): fits" in out
    assert "none was measured on a GPU by this project yet" in out
    total = re.search(r"^  total\s+([\d.]+)\s+([\d.]+)$", out, flags=re.M)
    assert total, out
    held, floor = map(float, total.groups())
    assert 0 < floor < held
    # test split in one shard: 12 training-split simulate jobs (3 iterations x 4 shards) + 4 test (m0..m3)
    assert re.search(r"^  simulate\s+16\s+32\s", out, flags=re.M), out


def test_test_split_is_simulated_in_one_job(tmp_path):
    (tmp_path / "config").symlink_to(REPO / "config")
    proc = snakemake_dry(["--configfile", str(PAPER)], tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    sims = [j for j in parse_dry_run(proc.stdout) if j.rule == "simulate"]
    test_shards = sorted((j.wildcards["t"], j.wildcards["shard"]) for j in sims if j.wildcards["split"] == "test")
    assert test_shards == [("0", "0"), ("1", "0"), ("2", "0"), ("3", "0")]
    assert sum(j.wildcards["split"] != "test" for j in sims) == 12


def test_plan_json_and_hours_of_a_dry_run(paper, tmp_path):
    jobs = [
        Job("train", {"t": "1"}, {"gpu": "2"}),
        Job("score", {"t": "0", "split": "test", "condition": "qa-experimental"}, {"gpu": "1"}),
        Job("pool", {"t": "0", "split": "A"}, {"gpu": "0"}),
    ]
    hours = estimate(jobs, paper, REPO, load_table(None), card_gb=80)
    assert set(hours.per_rule) == {"train", "score"}
    assert hours.per_rule["train"]["held"] == pytest.approx(2 * hours.jobs[0].wall_seconds)
    res = resources_from({"train": {"gpu": 2}}, {"gpu_memory_gb": 80})
    assert res["train"].gpu_memory_gb == 80 and res["score"].gpu == 0
    assert json.loads(json.dumps({"ok": hours.held}))  # plain numbers
