"""transformers backend: batched chat generation and exact summed log-probs, on CPU or GPU.

The model is loaded once per process. Generation sorts prompts by length and runs fixed-size batches
with left padding through a decode loop of our own (prefill, then one token per step with the KV cache);
with n > 1 samples the prompt is encoded once and its cache repeated n times. Sampling draws every row's
token from that row's own `torch.Generator`, seeded with the prompt's seed + k for its k-th sample
(`stargate.seeding`), so a prompt's samples do not depend on the batch it shares or the batch size (up to
floating-point differences of padded kernels, far below what flips a sample in fp32). Scoring runs
teacher-forced forward passes with right padding and sums the log-probabilities of exactly the target
tokens (span from character offsets, see spans.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from ..errors import StargateError
from ..log import get_logger
from ..seeding import sample_seeds
from .base import Backend, Prompt, Sampling, Score
from .options import HFOptions, parse_options
from .spans import prompt_ids, render_for_scoring
from .vllm033 import decode_output

log = get_logger(__name__)


def _resolve_dtype(torch, dtype: str, device: str):
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)


def _stop_ids(tokenizer, model) -> set[int]:
    """End-of-sequence ids: the tokenizer's and the generation config's (some models stop on several)."""
    ids = {tokenizer.eos_token_id}
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(eos if isinstance(eos, list | tuple) else [eos])
    return {int(i) for i in ids if i is not None}


class HFBackend(Backend):
    name = "hf"

    def __init__(self, model: str, options: HFOptions | dict | None = None, *, gpus: int = 0) -> None:
        super().__init__()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        opts = parse_options(HFOptions, options, "hf")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.torch = torch
        device = opts.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.batch_size = int(opts.batch_size)
        t0 = time.perf_counter()
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        kwargs = {"dtype": _resolve_dtype(torch, opts.dtype, device)}
        if opts.attn_implementation:
            kwargs["attn_implementation"] = opts.attn_implementation
        if device.startswith("cuda") and gpus > 1:
            kwargs["device_map"] = "auto"  # layers spread over the job's GPUs
        self.model = AutoModelForCausalLM.from_pretrained(model, **kwargs)
        if "device_map" not in kwargs:
            self.model.to(device)
        self.model.eval()
        self.stop_ids = _stop_ids(self.tokenizer, self.model)
        log.info("loaded %s on %s (%s) in %.1fs", model, device, kwargs["dtype"], time.perf_counter() - t0)

    # --------------------------------------------------------------- generate
    def generate(
        self, prompts: Sequence[Prompt], sampling: Sampling, seeds: Sequence[int] | None = None
    ) -> list[list[str | None]]:
        torch = self.torch
        seeds = self._seeds(prompts, sampling, seeds)
        encoded = [prompt_ids(self.tokenizer, p) for p in prompts]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        results: list[list[str | None]] = [[] for _ in encoded]
        pad = self.tokenizer.pad_token_id
        n = sampling.n
        # n samples per prompt multiply the batch: keep rows per forward pass near batch_size
        per_batch = max(1, self.batch_size // max(1, n))
        t0, n_new = time.perf_counter(), 0
        for start in range(0, len(order), per_batch):
            idx = order[start : start + per_batch]
            width = max(len(encoded[i]) for i in idx)
            input_ids = torch.full((len(idx), width), pad, dtype=torch.long)
            attention = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):  # left padding
                ids = encoded[i]
                input_ids[row, width - len(ids) :] = torch.tensor(ids)
                attention[row, width - len(ids) :] = 1
            row_seeds = [s for i in idx for s in sample_seeds(seeds[i], n)]
            with torch.no_grad():
                rows = self._decode(input_ids.to(self.device), attention.to(self.device), n, sampling, row_seeds)
            for r, toks in enumerate(rows):
                n_new += len(toks)
                i = idx[r // n]
                results[i].append(decode_output(self.tokenizer, prompts[i], encoded[i], toks))
        dt = time.perf_counter() - t0
        self.stats.n_tokens_in += sum(len(e) for e in encoded)
        self.stats.n_tokens_out += n_new
        self.stats.seconds += dt
        log.info(
            "generated %d outputs, %d tokens in %.1fs (%.1f tok/s)",
            len(prompts) * n,
            n_new,
            dt,
            n_new / dt if dt else 0.0,
        )
        return self._count(results)

    def _decode(self, input_ids, attention, n: int, sampling: Sampling, row_seeds: list[int]) -> list[list[int]]:
        """Token ids of n continuations per row (without the stop token). The prompt batch is encoded once
        and its KV cache repeated n times: the long elicitation prompt dominates the Questioner's turn 1."""
        torch = self.torch
        positions = (attention.cumsum(-1) - 1).clamp(min=0)  # left padding: real tokens count from 0
        out = self.model(input_ids=input_ids, attention_mask=attention, position_ids=positions, use_cache=True)
        cache, logits = out.past_key_values, out.logits[:, -1, :]
        if n > 1:
            attention = attention.repeat_interleave(n, 0)
            positions = positions.repeat_interleave(n, 0)
            if hasattr(cache, "batch_repeat_interleave"):
                cache.batch_repeat_interleave(n)
                logits = logits.repeat_interleave(n, 0)
            else:  # a cache type that cannot be repeated: encode each row n times instead
                ids = input_ids.repeat_interleave(n, 0)
                out = self.model(input_ids=ids, attention_mask=attention, position_ids=positions, use_cache=True)
                cache, logits = out.past_key_values, out.logits[:, -1, :]
        rows = logits.shape[0]
        generators = None
        if sampling.temperature > 0:
            generators = [torch.Generator(device=logits.device).manual_seed(s) for s in row_seeds]
        tokens: list[list[int]] = [[] for _ in range(rows)]
        done = [False] * rows
        pos = positions[:, -1:]
        pad = self.tokenizer.pad_token_id
        for step in range(sampling.max_tokens):
            nxt = self._pick(logits.float(), sampling, generators, done)
            for r, t in enumerate(nxt.tolist()):
                if done[r]:
                    continue
                if t in self.stop_ids:
                    done[r] = True
                else:
                    tokens[r].append(t)
            if all(done) or step == sampling.max_tokens - 1:
                break
            nxt = torch.where(torch.tensor(done, device=nxt.device), torch.full_like(nxt, pad), nxt)
            attention = torch.cat([attention, attention.new_ones((rows, 1))], dim=1)
            pos = pos + 1
            out = self.model(
                input_ids=nxt[:, None],
                attention_mask=attention,
                position_ids=pos,
                past_key_values=cache,
                use_cache=True,
            )
            cache, logits = out.past_key_values, out.logits[:, -1, :]
        return tokens

    def _pick(self, logits, sampling: Sampling, generators, done: list[bool]):
        """The next token of every row: argmax when greedy, else a draw from the row's own generator after
        temperature and nucleus (top_p) filtering. Finished rows draw nothing, so a row's random stream
        depends on its own tokens only."""
        torch = self.torch
        if generators is None:
            return logits.argmax(-1)
        probs = torch.softmax(logits / sampling.temperature, dim=-1)
        if sampling.top_p < 1.0:
            sorted_p, sorted_i = probs.sort(dim=-1, descending=True)
            outside = sorted_p.cumsum(-1) - sorted_p > sampling.top_p  # the top token always stays
            sorted_p = sorted_p.masked_fill(outside, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, sorted_i, sorted_p)
        picks = torch.zeros(probs.shape[0], dtype=torch.long, device=probs.device)
        for r, gen in enumerate(generators):
            if not done[r]:
                picks[r] = torch.multinomial(probs[r], 1, generator=gen)[0]
        return picks

    # ------------------------------------------------------------------ score
    def score(self, contexts: Sequence[Prompt], targets: Sequence[str]) -> list[Score]:
        torch = self.torch
        if len(contexts) != len(targets):
            raise StargateError(f"score: {len(contexts)} contexts but {len(targets)} targets")
        rendered = [render_for_scoring(self.tokenizer, c, t) for c, t in zip(contexts, targets, strict=True)]
        order = sorted(range(len(rendered)), key=lambda i: len(rendered[i][0]))
        scores: list[Score | None] = [None] * len(rendered)
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            width = max(len(rendered[i][0]) for i in idx)
            input_ids = torch.full((len(idx), width), pad, dtype=torch.long)
            attention = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):  # right padding: positions are those of the unpadded text
                ids = rendered[i][0]
                input_ids[row, : len(ids)] = torch.tensor(ids)
                attention[row, : len(ids)] = 1
            with torch.no_grad():
                logits = self.model(
                    input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device)
                ).logits
            for row, i in enumerate(idx):
                ids, s, e = rendered[i]
                if s < 1:
                    raise ValueError("a target must follow a non-empty context")
                # logits at position p predict token p+1
                step = torch.log_softmax(logits[row, s - 1 : e - 1].float(), dim=-1)
                tok = torch.tensor(ids[s:e], device=step.device)
                lp = step.gather(1, tok.unsqueeze(1)).sum().item()
                scores[i] = Score(logprob=float(lp), n_tokens=e - s)
        self._count_scores(scores)  # type: ignore[arg-type]
        return scores  # type: ignore[return-value]

    def close(self) -> None:
        del self.model
        if self.torch.cuda.is_available():
            self.torch.cuda.empty_cache()
