"""The one interface every generation backend implements (hf, vllm, openai-compatible, scripted).

A *prompt* is either a chat (a list of {"role", "content"} messages, rendered by the backend with
the model's chat template) or a raw string (already fully formatted, e.g. the paper's hand-built
Mistral strings; tokenized as-is, no special tokens added). API backends accept chats only.

Seeds follow the contract of `stargate.seeding`: `generate(prompts, sampling, seeds)` takes one seed per
prompt, and a prompt's samples depend only on the prompt, its seed and the sampling parameters, never on
which other prompts share the call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import StargateError
from ..seeding import content_seed

Message = dict[str, str]
Prompt = list[Message] | str


@dataclass(frozen=True)
class Sampling:
    """Decoding parameters of one generation call. temperature == 0 means greedy."""

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    seed: int = 0

    @classmethod
    def from_config(cls, cfg: dict[str, Any], **overrides: Any) -> Sampling:
        known = {k: cfg[k] for k in ("n", "temperature", "top_p", "max_tokens", "seed") if k in cfg}
        known.update(overrides)
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class PromptTooLong(StargateError):
    """Prompts that leave no room to generate within the model's context (`count` of them; the first is
    prompt `index`, `n_tokens` long). A generation stage names its item instead (`for_item`: the pair)."""

    def __init__(self, index: int, n_tokens: int, limit: int, source: str, fix: str, count: int = 1, item=None):
        self.index, self.n_tokens, self.limit, self.source, self.fix, self.count, self.item = (
            index, n_tokens, limit, source, fix, count, item,
        )  # fmt: skip
        more = f" ({count - 1} more prompt(s) of this call are too long too)" if count > 1 else ""
        super().__init__(
            f"{item or f'prompt {index}'}: the prompt has {n_tokens} tokens, but the model's context holds "
            f"{limit} ({source}): no room to generate{more}. Fix: {fix}"
        )

    def for_item(self, item: str) -> PromptTooLong:
        """The same error naming `item` (e.g. "oracle: pair A-t0000|A-p00") instead of the prompt's index."""
        return PromptTooLong(self.index, self.n_tokens, self.limit, self.source, self.fix, self.count, item)

    def __reduce__(self):  # crosses a worker process's pipe (stages/role_process.py)
        args = (self.index, self.n_tokens, self.limit, self.source, self.fix, self.count, self.item)
        return (PromptTooLong, args)


def check_context(encoded: Sequence[Sequence[int]], limit: int | None, source: str, fix: str) -> None:
    """Refuse prompts (token ids) of `limit` tokens or more: the model could not generate one token after
    them (a transformers model would run past its positions and answer garbage, silently)."""
    if not limit:
        return
    over = [i for i, ids in enumerate(encoded) if len(ids) >= limit]
    if over:
        raise PromptTooLong(over[0], len(encoded[over[0]]), int(limit), source, fix, count=len(over))


@dataclass(frozen=True)
class Score:
    """Summed log-probability of a target span given its context, and the number of target tokens."""

    logprob: float
    n_tokens: int


@dataclass
class GenerationStats:
    """Counters a backend keeps so stages report them (empty or refused outputs are never dropped silently).

    `extra` holds backend-specific counters (the openai backend: api_calls, cache_hits, retries,
    tokens_in, tokens_out, cost_usd, refused).
    """

    n_prompts: int = 0
    n_outputs: int = 0
    n_empty: int = 0
    n_refused: int = 0  # completions a content filter refused (returned as None)
    n_tokens_in: int = 0
    n_tokens_out: int = 0
    n_scored: int = 0
    n_scored_tokens: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def merged(self, other: GenerationStats) -> GenerationStats:
        """The sum of two sets of counters (numeric `extra` entries added, others taken from `other`)."""
        out = GenerationStats(**{k: getattr(self, k) + getattr(other, k) for k in _COUNTERS})
        out.extra = dict(self.extra)
        for k, v in other.extra.items():
            num = isinstance(v, int | float) and isinstance(out.extra.get(k, 0), int | float)
            out.extra[k] = out.extra.get(k, 0) + v if num else v
        return out

    def to_dict(self) -> dict[str, Any]:
        """A flat JSON-ready dict for an artifact's `.meta.json` (`backend_stats`) and the job log."""
        out = {k: v for k, v in asdict(self).items() if k != "extra"}
        out["seconds"] = round(self.seconds, 3)
        # a backend counter named like a standard one is kept beside it, never over it
        return {**out, **{(f"extra_{k}" if k in out else k): v for k, v in self.extra.items()}}


_COUNTERS = [f for f in GenerationStats.__dataclass_fields__ if f != "extra"]


class Backend(ABC):
    """A loaded model behind one role. Load once per job, submit all prompts in as few calls as possible."""

    name: str = "base"

    def __init__(self) -> None:
        self.stats = GenerationStats()

    @abstractmethod
    def generate(
        self, prompts: Sequence[Prompt], sampling: Sampling, seeds: Sequence[int] | None = None
    ) -> list[list[str | None]]:
        """Return `sampling.n` completions for every prompt, in order.

        `seeds` holds one seed per prompt (see `stargate.seeding`; None: derived from `sampling.seed` and
        each prompt's content). A completion is None only where a backend reports a refusal.
        """

    def score(self, contexts: Sequence[Prompt], targets: Sequence[str]) -> list[Score]:
        """Summed log p(target tokens | context) for each (context, target) pair.

        For a chat context the target is the content of the next assistant turn: the span is located in
        the full chat-template rendering by character offsets, so no end-of-turn token is counted. For a
        raw context the target is appended to the string as-is.
        """
        raise NotImplementedError(f"the {self.name} backend cannot score log-probabilities")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release memory (GPU, worker processes, connections)."""

    def _seeds(self, prompts: Sequence[Prompt], sampling: Sampling, seeds: Sequence[int] | None) -> list[int]:
        """One seed per prompt: the caller's, checked, or derived from the prompt's content."""
        if seeds is None:
            return [content_seed(sampling.seed, p) for p in prompts]
        seeds = [int(s) for s in seeds]
        if len(seeds) != len(prompts):
            raise StargateError(f"{self.name} backend: {len(seeds)} seeds for {len(prompts)} prompts (one each)")
        return seeds

    def _count(self, outputs: list[list[str | None]]) -> list[list[str | None]]:
        self.stats.n_prompts += len(outputs)
        for outs in outputs:
            self.stats.n_outputs += len(outs)
            self.stats.n_refused += sum(1 for o in outs if o is None)
            self.stats.n_empty += sum(1 for o in outs if o is not None and not o.strip())
        return outputs

    def _count_scores(self, scores: Sequence[Score]) -> None:
        self.stats.n_scored += len(scores)
        self.stats.n_scored_tokens += sum(s.n_tokens for s in scores)

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
