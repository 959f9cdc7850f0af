"""transformers backend: batched chat generation and exact summed log-probs, on CPU or GPU.

The model is loaded once per process. Generation sorts prompts by their tokens (shared prefixes side by
side) and runs fixed-size batches with left padding through a decode loop of our own (prefill, then one
token per step with the KV cache); a prefix shared by neighbouring prompts is encoded once (`_prefill`),
and with n > 1 samples the prompt is encoded once and its cache repeated n times. Sampling draws every row's
token from that row's own `torch.Generator`, seeded with the prompt's seed + k for its k-th sample
(`stargate.seeding`), so a prompt's samples do not depend on the batch it shares or the batch size (up to
floating-point differences of padded kernels, far below what flips a sample in fp32). Scoring runs
teacher-forced forward passes with left padding (a pair's conversations share their start, encoded once),
computes logits at the target positions only, and sums
the log-probabilities of exactly the target tokens (span from character offsets, see stargate/encoding/spans.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from ..encoding.spans import prompt_ids, render_for_scoring
from ..encoding.vllm033 import decode_output
from ..errors import StargateError
from ..log import get_logger
from ..seeding import sample_seeds
from .base import Backend, Prompt, Sampling, Score, check_context
from .oom import run_halving
from .options import HFOptions, parse_options

log = get_logger(__name__)

# Rows sharing at least this many leading tokens have them encoded once (a shorter shared prefix does not
# repay the extra forward pass).
SHARED_MIN = 32


def _cache_argument() -> str:
    """transformers >= 5.2x names the KV cache `cache` (argument and output field) and warns on every call with
    the old name `past_key_values`, which the 5.19 of the vLLM environment still needs."""
    try:
        from transformers.modeling_outputs import CausalLMOutputWithPast

        return "cache" if "cache" in getattr(CausalLMOutputWithPast, "__dataclass_fields__", {}) else "past_key_values"
    except ImportError:
        return "past_key_values"


CACHE_ARG = _cache_argument()


def _cache_of(out):
    return getattr(out, CACHE_ARG)


# Top-p sampling first looks for the nucleus among this many most likely tokens (see HFBackend._pick).
NUCLEUS_FIRST = 256


def _floor_of_sorted(torch, p_sorted, top_p: float):
    """Per row of descending probabilities: the last one whose preceding mass is at most top_p."""
    inside = (p_sorted.cumsum(-1) - p_sorted <= top_p).sum(-1).clamp(min=1)
    return p_sorted.gather(1, (inside - 1).unsqueeze(1)).squeeze(1)


def _common_length(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    """Length of the common prefix of a and b, at most limit."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if n >= limit or x != y:
            break
        n += 1
    return n


def _resolve_dtype(torch, dtype: str, device: str):
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)


CONTEXT_FIX = "shorten the persona (or the task) in the data file, or use a model with a longer context"


def _context_limit(config, tokenizer) -> tuple[int | None, str]:
    """The model's maximum context in tokens and where it comes from (None: unknown, nothing is checked)."""
    limit = getattr(config, "max_position_embeddings", None)
    if isinstance(limit, int) and limit > 0:
        return limit, "max_position_embeddings in the model's config.json"
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 10**9:  # transformers' "unknown" is a huge sentinel
        return limit, "the tokenizer's model_max_length"
    return None, "unknown"


def _stop_ids(tokenizer, model) -> set[int]:
    """End-of-sequence ids: the tokenizer's and the generation config's (some models stop on several)."""
    ids = {tokenizer.eos_token_id}
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(eos if isinstance(eos, list | tuple) else [eos])
    return {int(i) for i in ids if i is not None}


class HFBackend(Backend):
    name = "hf"

    def __init__(
        self, model: str, options: HFOptions | dict | None = None, *, gpus: int = 0, prompt_set: str | None = None
    ) -> None:
        super().__init__()
        import torch
        from transformers import AutoModelForCausalLM

        from ..tokenization import load_tokenizer

        opts = parse_options(HFOptions, options, "hf")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.torch = torch
        device = opts.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.batch_size = int(opts.batch_size)
        t0 = time.perf_counter()
        self.tokenizer = load_tokenizer(model, prompt_set, opts.tokenizer)
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
        self.context = _context_limit(self.model.config, self.tokenizer)
        log.info("loaded %s on %s (%s) in %.1fs", model, device, kwargs["dtype"], time.perf_counter() - t0)

    # --------------------------------------------------------------- generate
    def generate(
        self, prompts: Sequence[Prompt], sampling: Sampling, seeds: Sequence[int] | None = None
    ) -> list[list[str | None]]:
        torch = self.torch
        seeds = self._seeds(prompts, sampling, seeds)
        encoded = [prompt_ids(self.tokenizer, p) for p in prompts]
        check_context(encoded, *self.context, fix=CONTEXT_FIX)
        # neighbours share prefixes (the elicitation instruction after the same name), then similar lengths
        order = sorted(range(len(encoded)), key=lambda i: encoded[i])
        results: list[list[str | None]] = [[] for _ in encoded]
        n = sampling.n
        # n samples per prompt multiply the batch: keep rows per forward pass near batch_size
        per_batch = max(1, self.batch_size // max(1, n))
        t0 = time.perf_counter()

        def run_batch(idx: Sequence[int]) -> list[list[int]]:
            row_seeds = [s for i in idx for s in sample_seeds(seeds[i], n)]
            with torch.no_grad():
                rows = self._decode([encoded[i] for i in idx], n, sampling, row_seeds)
            return [rows[j * n : (j + 1) * n] for j in range(len(idx))]  # per prompt: its n continuations

        # per-row seeds: a batch halved on out-of-memory samples the same texts
        n_new = 0
        for i, samples in zip(order, run_halving(order, per_batch, run_batch, "generate", "prompts"), strict=True):
            for toks in samples:
                n_new += len(toks)
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

    def _padded(self, rows: Sequence[Sequence[int]]):
        """Left-padded ids, attention mask and positions (real tokens count from 0) of token id lists."""
        torch = self.torch
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for j, r in enumerate(rows):
            if r:
                ids[j, width - len(r) :] = torch.tensor(r)
                attention[j, width - len(r) :] = 1
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        return ids.to(self.device), attention.to(self.device), positions.to(self.device)

    def _prefill(self, rows: list[list[int]], caps: list[int], keep: int = 1, cache: bool = True):
        """One forward pass over a batch of token id lists, with the prefix that neighbouring rows share
        encoded once. Rows are grouped while they share >= SHARED_MIN tokens with the group's first row (the
        caller orders them so); a group's prefix (at most each member's cap, so every row keeps a suffix)
        runs once, its KV cache is copied to the group's rows, and only the suffixes run batched after it
        (padding sits between prefix and suffix, masked; positions continue from the prefix). The paper's
        Questioner prompt is ~500 tokens of instruction after the user's name and before the task, so the
        tasks of one persona share it. Returns the cache (None without `cache` when nothing is shared: scoring
        needs no cache), the full attention mask, the suffix positions and the logits of the last `keep`
        positions."""
        torch = self.torch
        firsts: list[int] = []  # per group: its first row and the length its rows share
        shared: list[int] = []
        group_of: list[int] = []
        for j, r in enumerate(rows):
            if firsts:
                n_same = _common_length(rows[firsts[-1]], r, min(shared[-1], caps[j]))
                if n_same >= SHARED_MIN:
                    group_of.append(len(firsts) - 1)
                    shared[-1] = n_same
                    continue
            group_of.append(len(firsts))
            firsts.append(j)
            shared.append(min(len(r), caps[j]))
        if len(firsts) == len(rows):  # nothing shared: one plain pass
            ids, attention, positions = self._padded(rows)
            out = self.model(
                input_ids=ids, attention_mask=attention, position_ids=positions, use_cache=cache, logits_to_keep=keep
            )
            return _cache_of(out), attention, positions, out.logits
        p_ids, p_att, p_pos = self._padded([rows[f][:n] for f, n in zip(firsts, shared, strict=True)])
        kv = _cache_of(
            self.model(  # the prefix's logits are never used: the lm_head sees one position
                input_ids=p_ids, attention_mask=p_att, position_ids=p_pos, use_cache=True, logits_to_keep=1
            )
        )
        select = torch.tensor(group_of, device=p_ids.device)
        kv.batch_select_indices(select)  # each row gets its group's prefix cache
        s_ids, s_att, s_pos = self._padded([r[shared[group_of[j]] :] for j, r in enumerate(rows)])
        prefix_len = torch.tensor([shared[g] for g in group_of], device=s_ids.device)[:, None]
        attention = torch.cat([p_att[select], s_att], dim=1)
        positions = s_pos + prefix_len
        out = self.model(
            input_ids=s_ids,
            attention_mask=attention,
            position_ids=positions,
            **{CACHE_ARG: kv},
            use_cache=True,
            logits_to_keep=keep,
        )
        return _cache_of(out), attention, positions, out.logits

    def _decode(self, rows: list[list[int]], n: int, sampling: Sampling, row_seeds: list[int]) -> list[list[int]]:
        """Token ids of n continuations per prompt (without the stop token). The prompts are encoded once
        (shared prefixes once per group, see _prefill) and the KV cache repeated n times."""
        torch = self.torch
        cache, attention, positions, logits = self._prefill(rows, [len(r) - 1 for r in rows])
        logits = logits[:, -1, :]
        if n > 1 and hasattr(cache, "batch_repeat_interleave"):
            attention = attention.repeat_interleave(n, 0)
            positions = positions.repeat_interleave(n, 0)
            cache.batch_repeat_interleave(n)
            logits = logits.repeat_interleave(n, 0)
        elif n > 1:  # a cache type that cannot be repeated: encode each prompt n times instead
            repeated = [r for r in rows for _ in range(n)]
            cache, attention, positions, logits = self._prefill(repeated, [len(r) - 1 for r in repeated])
            logits = logits[:, -1, :]
        n_rows = logits.shape[0]
        generators = None
        if sampling.temperature > 0:
            generators = [torch.Generator(device=logits.device).manual_seed(s) for s in row_seeds]
        tokens: list[list[int]] = [[] for _ in range(n_rows)]
        done = [False] * n_rows
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
            attention = torch.cat([attention, attention.new_ones((n_rows, 1))], dim=1)
            pos = pos + 1
            out = self.model(
                input_ids=nxt[:, None],
                attention_mask=attention,
                position_ids=pos,
                **{CACHE_ARG: cache},
                use_cache=True,
            )
            cache, logits = _cache_of(out), out.logits[:, -1, :]
        return tokens

    def _pick(self, logits, sampling: Sampling, generators, done: list[bool]):
        """The next token of every row: argmax when greedy, else a draw after temperature and nucleus (top_p)
        filtering. Each unfinished row draws one uniform number from its own generator (finished rows draw
        nothing, so a row's random stream depends on its own tokens only), and the token is found by inverse
        CDF over the vocabulary in its own order, for all rows at once: a per-row sort and multinomial cost
        most of the decode time on CPU."""
        torch = self.torch
        if generators is None:
            return logits.argmax(-1)
        probs = torch.softmax(logits / sampling.temperature, dim=-1)
        if sampling.top_p < 1.0:
            probs = probs * (probs >= self._nucleus_floor(probs, sampling.top_p))
        cdf = probs.cumsum(-1)
        u = [0.0 if d else float(torch.rand(1, generator=g)) for g, d in zip(generators, done, strict=True)]
        point = torch.tensor(u, dtype=cdf.dtype, device=cdf.device) * cdf[:, -1]
        # the first token whose cumulative mass exceeds the point: a zero-probability token never is
        picks = torch.searchsorted(cdf, point.unsqueeze(1), right=True).squeeze(1)
        return picks.clamp(max=probs.shape[-1] - 1)

    def _nucleus_floor(self, probs, top_p: float):
        """Per row, the probability of the least likely token of the nucleus (the most likely tokens whose
        mass before them is at most top_p; the top token always). Looked for among the NUCLEUS_FIRST most
        likely tokens (a partial sort); rows whose nucleus is wider are sorted in full. Tokens tied with the
        floor are all kept."""
        torch = self.torch
        top = probs.topk(min(NUCLEUS_FIRST, probs.shape[-1]), dim=-1).values
        wide = top.sum(-1) <= top_p  # the nucleus may go on past the partial sort
        if bool(wide.any()):
            full = probs[wide].sort(dim=-1, descending=True).values
            floors = torch.empty(probs.shape[0], dtype=probs.dtype, device=probs.device)
            floors[wide] = _floor_of_sorted(torch, full, top_p)
            floors[~wide] = _floor_of_sorted(torch, top[~wide], top_p)
        else:
            floors = _floor_of_sorted(torch, top, top_p)
        return floors.unsqueeze(1)

    # ------------------------------------------------------------------ score
    def score(self, contexts: Sequence[Prompt], targets: Sequence[str]) -> list[Score]:
        """Summed log p(target | context) per pair. Only what the sum needs is computed: each row is cut
        after its last target token's context (ids[: end - 1]: what follows cannot change the earlier
        logits of a causal model), rows are left-padded so every target ends at the batch's last position,
        and the lm_head runs on the last `max target length` positions only (`logits_to_keep`), not the
        full vocabulary at every context position. Rows are sorted by length to cut padding; log-softmax
        and the sum run in fp32."""
        if len(contexts) != len(targets):
            raise StargateError(f"score: {len(contexts)} contexts but {len(targets)} targets")
        rendered = [render_for_scoring(self.tokenizer, c, t) for c, t in zip(contexts, targets, strict=True)]
        scores: list[Score | None] = [None] * len(rendered)
        todo = []
        for i, (_, s, e) in enumerate(rendered):
            if s < 1:
                raise ValueError("a target must follow a non-empty context")
            if e == s:  # an empty target: nothing to run
                scores[i] = Score(logprob=0.0, n_tokens=0)
            else:
                todo.append(i)
        todo.sort(key=lambda i: rendered[i][0][: rendered[i][2] - 1])  # a pair's conversations side by side
        t0, n_fed = time.perf_counter(), 0
        lps = run_halving(
            todo, self.batch_size, lambda idx: self._score_batch([rendered[i] for i in idx]), "score", "pairs"
        )
        for i, lp in zip(todo, lps, strict=True):
            scores[i] = Score(logprob=lp, n_tokens=rendered[i][2] - rendered[i][1])
            n_fed += rendered[i][2] - 1
        dt = time.perf_counter() - t0
        self.stats.n_tokens_in += n_fed
        self.stats.seconds += dt
        n_target = sum(s.n_tokens for s in scores if s is not None)
        log.info(
            "scored %d pairs: %d tokens fed, %d target tokens in %.1fs (%.1f target tok/s)",
            len(rendered),
            n_fed,
            n_target,
            dt,
            n_target / dt if dt else 0.0,
        )
        self._count_scores(scores)  # type: ignore[arg-type]
        return scores  # type: ignore[return-value]

    def _score_batch(self, rows: list[tuple[list[int], int, int]]) -> list[float]:
        torch = self.torch
        keep = max(e - s for _, s, e in rows)  # the longest target: the positions whose logits are needed
        # each row ends at its last target token's context, so every target ends at the last position; a
        # shared prefix stops before the target's first context position (s - 1)
        with torch.no_grad():
            *_, logits = self._prefill(
                [ids[: e - 1] for ids, _, e in rows], [s - 1 for _, s, _ in rows], keep, cache=False
            )
        out = []
        for r, (ids, s, e) in enumerate(rows):
            # logits[:, j] predicts the token at width - keep + j + 1 of the padded row, i.e. ids[s:e]
            # of this row sit at the last e - s positions
            step = torch.log_softmax(logits[r, keep - (e - s) :].float(), dim=-1)
            tok = torch.tensor(ids[s:e], device=step.device)
            out.append(float(step.gather(1, tok.unsqueeze(1)).sum().item()))
        return out

    def close(self) -> None:
        del self.model
        if self.torch.cuda.is_available():
            self.torch.cuda.empty_cache()
