"""The one interface every generation backend implements (hf, vllm, openai-compatible).

A *prompt* is either a chat (a list of {"role", "content"} messages, rendered by the backend with
the model's chat template) or a raw string (already fully formatted, e.g. the paper's hand-built
Mistral strings; tokenized as-is, no special tokens added). API backends accept chats only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

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


@dataclass(frozen=True)
class Score:
    """Summed log-probability of a target span given its context, and the number of target tokens."""

    logprob: float
    n_tokens: int


@dataclass
class GenerationStats:
    """Counters a backend keeps so stages can report them (empty outputs are never dropped silently)."""

    n_prompts: int = 0
    n_outputs: int = 0
    n_empty: int = 0
    n_tokens_out: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Backend(ABC):
    """A loaded model behind one role. Load once per job, submit all prompts in as few calls as possible."""

    name: str = "base"

    def __init__(self) -> None:
        self.stats = GenerationStats()

    @abstractmethod
    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[list[str]]:
        """Return `sampling.n` completions for every prompt, in order. Deterministic for a fixed seed."""

    def score(self, contexts: Sequence[Prompt], targets: Sequence[str]) -> list[Score]:
        """Summed log p(target tokens | context) for each (context, target) pair.

        For a chat context the target is the content of the next assistant turn: the span is located in
        the full chat-template rendering by character offsets, so no end-of-turn token is counted. For a
        raw context the target is appended to the string as-is.
        """
        raise NotImplementedError(f"the {self.name} backend cannot score log-probabilities")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release memory (GPU, worker processes, connections)."""

    def _count(self, outputs: list[list[str]]) -> list[list[str]]:
        self.stats.n_prompts += len(outputs)
        for outs in outputs:
            self.stats.n_outputs += len(outs)
            self.stats.n_empty += sum(1 for o in outs if not o.strip())
        return outputs

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
