"""transformers backend: batched chat generation and exact summed log-probs, on CPU or GPU.

The model is loaded once per process. Generation sorts prompts by length and runs fixed-size batches
with left padding; each batch is seeded from (seed, batch index), so a run is reproducible for a fixed
seed and batch size. Scoring runs teacher-forced forward passes with right padding and sums the
log-probabilities of exactly the target tokens (span from character offsets, see spans.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from ..log import get_logger
from .base import Backend, Prompt, Sampling, Score
from .spans import prompt_ids, render_for_scoring
from .vllm033 import decode_output

log = get_logger(__name__)


def _resolve_dtype(torch, dtype: str, device: str):
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)


class HFBackend(Backend):
    name = "hf"

    def __init__(
        self,
        model: str,
        dtype: str = "auto",
        device: str = "auto",
        batch_size: int = 16,
        gpus: int = 0,
        attn_implementation: str | None = None,
        **unused,
    ) -> None:
        super().__init__()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if unused:
            log.info("hf backend ignores options: %s", ", ".join(sorted(unused)))
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.torch = torch
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.batch_size = int(batch_size)
        t0 = time.perf_counter()
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        kwargs = {"dtype": _resolve_dtype(torch, dtype, device)}
        if attn_implementation:
            kwargs["attn_implementation"] = attn_implementation
        if device.startswith("cuda") and gpus > 1:
            kwargs["device_map"] = "auto"  # layers spread over the job's GPUs
        self.model = AutoModelForCausalLM.from_pretrained(model, **kwargs)
        if "device_map" not in kwargs:
            self.model.to(device)
        self.model.eval()
        log.info("loaded %s on %s (%s) in %.1fs", model, device, kwargs["dtype"], time.perf_counter() - t0)

    # --------------------------------------------------------------- generate
    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[list[str]]:
        torch = self.torch
        encoded = [prompt_ids(self.tokenizer, p) for p in prompts]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        results: list[list[str]] = [[] for _ in encoded]
        pad = self.tokenizer.pad_token_id
        eos = self.tokenizer.eos_token_id
        # n samples per prompt multiply the batch: keep rows per forward pass near batch_size
        per_batch = max(1, self.batch_size // max(1, sampling.n))
        t0, n_new = time.perf_counter(), 0
        for b, start in enumerate(range(0, len(order), per_batch)):
            idx = order[start : start + per_batch]
            width = max(len(encoded[i]) for i in idx)
            input_ids = torch.full((len(idx), width), pad, dtype=torch.long)
            attention = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):  # left padding
                ids = encoded[i]
                input_ids[row, width - len(ids) :] = torch.tensor(ids)
                attention[row, width - len(ids) :] = 1
            kwargs = dict(max_new_tokens=sampling.max_tokens, pad_token_id=pad)
            if sampling.temperature > 0:
                kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
            else:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            torch.manual_seed(sampling.seed * 1_000_003 + b)
            with torch.no_grad():
                out = self._generate_rows(input_ids.to(self.device), attention.to(self.device), sampling.n, kwargs)
            new = out[:, width:].cpu()
            for row, i in enumerate(idx):
                for k in range(sampling.n):
                    toks = new[row * sampling.n + k].tolist()
                    if eos in toks:
                        toks = toks[: toks.index(eos)]
                    toks = [t for t in toks if t != pad]
                    n_new += len(toks)
                    results[i].append(decode_output(self.tokenizer, prompts[i], encoded[i], toks))
        dt = time.perf_counter() - t0
        self.stats.n_tokens_out += n_new
        log.info("generated %d outputs, %d tokens in %.1fs (%.1f tok/s)", len(prompts) * sampling.n, n_new, dt,
                 n_new / dt if dt else 0.0)
        return self._count(results)

    def _generate_rows(self, input_ids, attention, n: int, kwargs: dict):
        """n continuations per row. With n > 1 the shared prompt is encoded once and its KV cache
        copied n times, instead of encoding the same prompt n times (the long elicitation prompt
        dominates the Questioner's first turn)."""
        ids, mask = input_ids.repeat_interleave(n, 0), attention.repeat_interleave(n, 0)
        if n > 1 and input_ids.shape[1] > 1:
            prefix = self.model(input_ids=input_ids[:, :-1], attention_mask=attention[:, :-1], use_cache=True)
            cache = prefix.past_key_values
            if hasattr(cache, "batch_repeat_interleave"):
                cache.batch_repeat_interleave(n)
                return self.model.generate(input_ids=ids, attention_mask=mask, past_key_values=cache, **kwargs)
        return self.model.generate(input_ids=ids, attention_mask=mask, **kwargs)

    # ------------------------------------------------------------------ score
    def score(self, contexts: Sequence[Prompt], targets: Sequence[str]) -> list[Score]:
        torch = self.torch
        if len(contexts) != len(targets):
            raise ValueError("contexts and targets differ in length")
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
                logits = self.model(input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device)).logits
            for row, i in enumerate(idx):
                ids, s, e = rendered[i]
                if s < 1:
                    raise ValueError("a target must follow a non-empty context")
                # logits at position p predict token p+1
                step = torch.log_softmax(logits[row, s - 1 : e - 1].float(), dim=-1)
                tok = torch.tensor(ids[s:e], device=step.device)
                lp = step.gather(1, tok.unsqueeze(1)).sum().item()
                scores[i] = Score(logprob=float(lp), n_tokens=e - s)
        return scores  # type: ignore[return-value]

    def close(self) -> None:
        del self.model
        if self.torch.cuda.is_available():
            self.torch.cuda.empty_cache()
