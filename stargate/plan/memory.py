"""Peak GPU memory of a training process and of an inference engine, term by term, from a model's shape.

Training (per process, i.e. per GPU; transformers' Trainer, AdamW from torch):

* weights, gradients and AdamW's two moments in the dtype the numerics give them: pure bf16 (the paper:
  2 + 2 + 4 bytes per parameter), fp32 master weights without DeepSpeed (4 + 4 + 8 = 16 bytes per parameter,
  the known figure for mixed-precision AdamW), or ZeRO-2/3 shards (2 + (2 + 12) / N or (2 + 2 + 12) / N bytes
  per parameter, Rajbhandari et al. 2020, "ZeRO", §3);
* DDP's gradient buckets with more than one process: torch's DistributedDataParallel keeps a second copy of
  every gradient in its buckets (gradient_as_bucket_view is off in the Trainer: transformers'
  `create_accelerator_and_postprocess` passes no such flag);
* the optimizer step's temporary: torch's multi-tensor (foreach) AdamW makes a copy of every second moment
  (`exp_avg_sq_sqrt = torch._foreach_sqrt(...)` in torch/optim/adam.py) the size of the model; the
  single-tensor implementation, which stargate/training/trainer_base.py uses, needs one parameter's worth at a time;
* activations of one micro-batch (per_device_batch_size x max_length tokens), per token and layer
  20 h + 8 I + 4 kv_dim + 4 heads + 8 bytes in pure bf16 with sdpa attention: measured on CPU (torch 2.13,
  transformers 5.25, MistralForCausalLM, the peak of the live tensors in torch's MemTracker at the start of
  the backward pass; tests/test_plan.py checks the formula against that measurement at other shapes). The
  terms: two RMSNorms (fp32 input 4 h + bf16 product 2 h each), their bf16 outputs (2 h each), the rotated
  queries (2 h), keys and values (2 kv_dim each), the attention output (2 h), the fp32 log-sum-exp per head,
  and the MLP's gate, SiLU, up and product (2 I each). With gradient checkpointing each layer keeps only its
  bf16 input (2 h) and one layer's activations are recomputed at a time, after the head's are freed. Plus
  the head: fp32 log-probs (4 V per token) and, at the start of the backward pass, two fp32 logit-sized
  gradients (8 V per token);
* the CUDA context (an assumption, below).

The peak is the larger of the backward pass (activations live, gradients of the earlier micro-batches of the
step already accumulated) and the optimizer step.

Inference with vLLM (per GPU): the engine takes gpu_memory_utilization x the card and splits it into the
weights (1/TP each), the activations of its profiling pass (max_num_batched_tokens), CUDA graphs and other
non-torch memory, and the KV cache, which must hold at least one max_model_len sequence or vLLM refuses to
start. The hf backend: the weights plus the KV cache of one batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .shapes import DTYPE_BYTES, Shape

GiB = 2**30

# --------------------------------------------------------------------------------------------- assumptions
# CUDA context and cuBLAS/NCCL workspaces per process: assumption (0.5-1 GiB is typical on A100/H100)
CUDA_CONTEXT_GIB = 1.0
# as stargate/training/trainer_base.py runs AdamW (StargateTrainer.create_optimizer; tests/test_plan.py checks both agree)
ADAMW_FOREACH = False
VLLM_DEFAULT_UTILIZATION = 0.9  # vLLM's own default for gpu_memory_utilization
VLLM_BATCHED_TOKENS = 16384  # assumption: the larger of vLLM's defaults for max_num_batched_tokens (8192 / 16384)
VLLM_MAX_SEQS = 1024  # assumption: the larger of vLLM's defaults for max_num_seqs (256 / 1024)
VLLM_RESERVE_GIB = 2.0  # CUDA graphs and non-torch memory per GPU: assumption (vLLM logs both at start-up)
HF_PROMPT_TOKENS = 2048  # hf backend: a prompt's tokens, assumption (a 3-turn paper_v1 prompt is under 2k)
CHECKPOINTING_COMPUTE = 4 / 3  # gradient checkpointing recomputes the forward pass: 1/3 more compute

# Activation bytes per token and layer relative to pure bf16 (the measured formula): fp32 doubles every
# saved tensor (an upper bound: 0.91 of it measured at the test shape); bf16 autocast over fp32 weights
# keeps the residual stream and norms in fp32 (1.48 of the bf16 figure measured at the test shape).
ACTIVATION_FACTOR = {"bf16": 1.0, "fp32": 2.0, "autocast": 1.5}


@dataclass
class Term:
    name: str
    bytes: float
    note: str = ""


@dataclass
class Memory:
    """One GPU of one job kind: the terms of its peak, the card, and whether it fits."""

    what: str
    gpus: int
    terms: list[Term] = field(default_factory=list)
    peak: float = 0.0
    card: float | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def fits(self) -> bool | None:
        if self.problems:
            return False
        return None if self.card is None else self.peak <= self.card

    def fit_text(self) -> str:
        if self.card is None:
            return "no card size given"
        if self.fits:
            return f"fits ({self.peak / GiB:.1f} of {self.card / GiB:.0f} GiB, margin {(self.card - self.peak) / GiB:.1f})"
        return f"DOES NOT FIT ({self.peak / GiB:.1f} GiB of {self.card / GiB:.0f})"

    def term_text(self) -> str:
        return ", ".join(f"{t.name} {t.bytes / GiB:.1f}" for t in self.terms if t.bytes)


# ------------------------------------------------------------------------------------------- training
def numerics(spec: dict) -> tuple[str, int, int, int]:
    """(label, weight bytes, gradient bytes, AdamW state bytes) per parameter, before any ZeRO sharding."""
    if spec.get("deepspeed"):
        return "bf16 weights, fp32 master weights and AdamW states (ZeRO)", 2, 2, 12
    if spec.get("master_weights") == "bf16":
        return "pure bf16 (weights, gradients and AdamW states)", 2, 2, 4
    return "fp32 weights, gradients and AdamW states" + (" (bf16 autocast)" if spec.get("bf16") else ""), 4, 4, 8


def activation_factor(spec: dict) -> float:
    if spec.get("deepspeed") or spec.get("master_weights") == "bf16":
        return ACTIVATION_FACTOR["bf16"]
    return ACTIVATION_FACTOR["autocast" if spec.get("bf16") else "fp32"]


def layer_activation_bytes(shape: Shape, factor: float = 1.0) -> float:
    """Saved activations of one decoder layer per token (pure bf16, sdpa): see the module docstring."""
    mlp = shape.intermediate * (shape.experts_per_token if shape.experts > 1 else 1)
    return factor * (20 * shape.hidden + 8 * mlp + 4 * shape.kv_dim + 4 * shape.heads + 8)


def activation_bytes(shape: Shape, tokens: int, checkpointing: bool, factor: float = 1.0) -> tuple[float, float]:
    """(saved activations, backward temporaries) of one micro-batch of `tokens` tokens at its peak.

    Without checkpointing the peak is the start of the backward pass: every layer's activations, the head's,
    and the fp32 logit gradients. With it, the larger of that moment (each layer's bf16 input, the head, the
    logit gradients) and a layer's recomputation later on (its activations and their gradients)."""
    layer = layer_activation_bytes(shape, factor)
    head = tokens * (factor * 8 * shape.hidden + 4 * shape.vocab)  # final norm + fp32 log-probs
    logit_grads = tokens * 8 * shape.vocab
    if not checkpointing:
        return tokens * shape.layers * layer + head, logit_grads
    inputs = tokens * shape.layers * shape.hidden * (2 if factor == 1.0 else 4)
    recompute = 2 * tokens * layer
    if head + logit_grads >= recompute:
        return inputs + head, logit_grads
    return inputs, recompute


def training_memory(shape: Shape, spec: dict, gpus: int, card: float | None = None) -> Memory:
    """Peak memory of one GPU of a `train` job with `gpus` GPUs (one process per GPU)."""
    procs = max(gpus, 1)
    label, wb, gb, ob = numerics(spec)
    n = shape.params
    stage = {"zero2": 2, "zero3": 3}.get(spec.get("deepspeed") or "", 0)
    mem = Memory(what=f"train: {spec.get('method', 'sft')}, {label}", gpus=gpus, card=card)
    weights = n * wb / (procs if stage == 3 else 1)
    grads = n * gb / (procs if stage >= 2 else 1)
    states = n * ob / (procs if stage else 1)
    mem.terms += [
        Term("weights", weights),
        Term("gradients", grads),
        Term("AdamW states", states, "fp32 master weights + 2 moments" if stage else "2 moments"),
    ]
    if stage == 0 and procs > 1:
        mem.terms.append(Term("DDP gradient buckets", n * gb, "a second copy of every gradient"))
    elif stage == 2:
        mem.terms.append(Term("ZeRO-2 buckets", (2e8 + shape.hidden**2) * 2, "allgather 2e8 + reduce h^2 elements"))
    elif stage == 3:
        mem.terms.append(
            Term("ZeRO-3 gathered layers", 2 * shape.layer_params * 2, "the layer in use and the prefetched one")
        )
    if spec.get("method") == "dpo":
        mem.terms.append(Term("DPO reference model", n * wb / (procs if stage == 3 else 1), "a frozen copy of m0"))
    moment_bytes = (4 if stage else ob // 2) / (procs if stage else 1)
    step_temp = (n if ADAMW_FOREACH else shape.largest_tensor_params) * moment_bytes
    tokens = int(spec.get("per_device_batch_size", 1)) * int(spec.get("max_length", 1024))
    if spec.get("method") == "dpo":
        tokens *= 2  # chosen and rejected in one forward pass
    factor = activation_factor(spec)
    ckpt = bool(spec.get("gradient_checkpointing"))
    acts, temps = activation_bytes(shape, tokens, ckpt, factor)
    other, _ = activation_bytes(shape, tokens, not ckpt, factor)
    context = CUDA_CONTEXT_GIB * GiB
    static = sum(t.bytes for t in mem.terms)
    backward = static + acts + temps + context
    step = static + step_temp + context
    mem.terms += [
        Term(
            "activations" + (" (checkpointed)" if ckpt else ""),
            acts,
            f"{tokens} tokens per micro-batch; {'without' if ckpt else 'with'} checkpointing {other / GiB:.1f} GiB",
        ),
        Term("backward temporaries", temps, "fp32 logit gradients, or a recomputed layer and its gradients"),
        Term("optimizer step temporary", step_temp, "foreach AdamW" if ADAMW_FOREACH else "one parameter at a time"),
        Term("CUDA context", context, "assumption"),
    ]
    mem.peak = max(backward, step)
    mem.extra = {
        "backward": backward,
        "step": step,
        "activations_with_checkpointing": acts if ckpt else other,
        "activations_without_checkpointing": other if ckpt else acts,
        "peak_other_checkpointing": max(static + other + temps + context, step),
        "foreach_step": static + n * moment_bytes + context,
        "tokens": tokens,
        "processes": procs,
    }
    if card is not None and mem.peak > card:
        mem.problems.append(training_fix(mem, spec, card))
    return mem


def training_fix(mem: Memory, spec: dict, card: float) -> str:
    """What to change when a training job does not fit: the first option the plan shows fits."""
    peak, extra = mem.peak / GiB, mem.extra
    head = f"peak {peak:.1f} GiB per GPU > {card / GiB:.0f} GiB ({mem.term_text()})"
    if not spec.get("gradient_checkpointing") and extra["peak_other_checkpointing"] <= card:
        return head + (
            f"; fix: set training.gradient_checkpointing: true (peak {extra['peak_other_checkpointing'] / GiB:.1f} GiB,"
            " the same numbers, about a third more compute)"
        )
    if not spec.get("deepspeed"):
        return head + (
            "; fix: give the job GPUs with more memory, or set training.deepspeed: zero3 with"
            " master_weights: fp32 (ZeRO shards the states; fp32 masters change the numerics, docs/training.md)"
        )
    return head + "; fix: more GPUs for train (ZeRO shards over them), gradient checkpointing, or larger cards"


# ------------------------------------------------------------------------------------------- inference
def _engine_arg(options: dict, key: str, default):
    value = (options.get("engine_args") or {}).get(key)
    if value is None:
        value = options.get(key)
    return default if value is None else value


def vllm_memory(shape: Shape, role: str, options: dict, gpus: int, card: float | None, scorer: bool = False) -> Memory:
    """One GPU of a vLLM engine on `gpus` GPUs (tensor parallel over them unless the role sets its own)."""
    tp = int(options.get("tensor_parallel_size") or max(gpus, 1))
    util = float(_engine_arg(options, "gpu_memory_utilization", VLLM_DEFAULT_UTILIZATION))
    max_len = int(_engine_arg(options, "max_model_len", shape.max_position))
    batched = int(_engine_arg(options, "max_num_batched_tokens", VLLM_BATCHED_TOKENS))
    seqs = int(_engine_arg(options, "max_num_seqs", VLLM_MAX_SEQS))
    dtype = options.get("dtype") or "auto"
    wbytes = DTYPE_BYTES.get(shape.dtype if dtype == "auto" else dtype, 2)
    kv_dtype = str(_engine_arg(options, "kv_cache_dtype", "auto"))
    kvbytes = 1 if kv_dtype.startswith("fp8") else wbytes
    mem = Memory(what=f"{role}: {shape.name} (vllm, TP {tp})", gpus=tp, card=card)
    weights = shape.params * wbytes / tp
    mlp = shape.intermediate * (shape.experts_per_token if shape.experts > 1 else 1)
    per_token = wbytes * (4 * shape.hidden + (shape.heads + 2 * shape.kv_heads) * shape.head_dim / tp + 3 * mlp / tp)
    act = batched * per_token + seqs * shape.vocab * 4 / tp
    if scorer:
        act += batched * shape.vocab * 4 / tp  # prompt log-probs: fp32 logits of every scored token
    reserve = VLLM_RESERVE_GIB * GiB
    mem.terms += [
        Term("weights", weights),
        Term("activations", act, f"profiling pass of {batched} tokens"),
        Term("CUDA graphs and non-torch", reserve, "assumption"),
    ]
    per_tok_kv = shape.kv_bytes_per_token(tp, kvbytes)
    mem.extra = {"tp": tp, "utilization": util, "max_model_len": max_len, "kv_bytes_per_token": per_tok_kv}
    if shape.heads % tp:
        mem.problems.append(
            f"{role}: tensor parallel size {tp} does not divide {shape.name}'s {shape.heads} attention heads"
            " (vLLM refuses); fix: give the rule a GPU count that divides it"
        )
    if card is None:
        mem.peak = weights + act + reserve
        mem.notes.append("no card size: the KV cache takes what gpu_memory_utilization leaves")
        return mem
    budget = util * card
    kv = budget - weights - act - reserve
    mem.terms.append(Term("KV cache", max(kv, 0.0), f"gpu_memory_utilization {util} x {card / GiB:.0f} GiB"))
    mem.peak = budget
    tokens = max(kv, 0.0) / per_tok_kv
    mem.extra["kv_tokens"] = tokens
    if kv <= 0 or tokens < max_len:
        need = weights + act + reserve + max_len * per_tok_kv
        more = 2 * tp if 2 * tp <= 8 else tp
        mem.problems.append(
            f"{role}: {shape.name} on {tp} GPU(s) needs {need / GiB:.1f} GiB per GPU (weights {weights / GiB:.1f},"
            f" activations {act / GiB:.1f}, reserve {reserve / GiB:.1f}, KV cache for one {max_len}-token sequence"
            f" {max_len * per_tok_kv / GiB:.1f}) but gpu_memory_utilization {util} x {card / GiB:.0f} GiB"
            f" gives {budget / GiB:.1f}; fix: {more} GPUs for this role (tensor parallel), a larger"
            " gpu_memory_utilization, or a smaller max_model_len in its options"
        )
    else:
        mem.notes.append(f"KV cache holds {tokens:,.0f} tokens ({tokens / max_len:.1f} x max_model_len {max_len})")
    return mem


def hf_memory(shape: Shape, role: str, options: dict, sampling: dict, gpus: int, card: float | None) -> Memory:
    """One GPU of the hf backend (the model on one device; a batch's KV cache and logits)."""
    dtype = options.get("dtype") or "auto"
    wbytes = 2 if dtype == "auto" else DTYPE_BYTES.get(dtype, 2)
    batch = int(options.get("batch_size") or 16) * int(sampling.get("n") or 1)
    seq = HF_PROMPT_TOKENS + int(sampling.get("max_tokens") or 256)
    mem = Memory(what=f"{role}: {shape.name} (hf)", gpus=gpus, card=card)
    mem.terms += [
        Term("weights", shape.params * wbytes),
        Term("KV cache", batch * seq * shape.kv_bytes_per_token(1, wbytes), f"{batch} rows x {seq} tokens"),
        Term("logits", batch * shape.vocab * 4 * 2, "fp32, two steps alive"),
        Term("CUDA context", CUDA_CONTEXT_GIB * GiB, "assumption"),
    ]
    mem.peak = sum(t.bytes for t in mem.terms)
    if card is not None and mem.peak > card:
        mem.problems.append(
            f"{role}: {shape.name} with the hf backend needs {mem.peak / GiB:.1f} GiB on one GPU of"
            f" {card / GiB:.0f} GiB ({mem.term_text()}); fix: a smaller options.batch_size, or the vllm backend"
        )
    return mem


def min_gpus_to_fit(shape: Shape, options: dict, card: float, limit: int = 8) -> int | None:
    """The fewest GPUs (a power of two dividing the heads) a vLLM engine needs for `shape` on `card`."""
    tp = 1
    while tp <= limit:
        if not vllm_memory(shape, "", {**options, "tensor_parallel_size": tp}, tp, card).problems:
            return tp
        tp *= 2
    return None
