"""The seeding contract: one seed per generation prompt, a pure function of what the prompt *is*.

A prompt's seed is a hash of the role's sampling seed, the stream (the stage that generates) and the
prompt's key (for the simulation: pair key, conversation index, turn)::

    seed = sha256(json([role_seed, stream, *key]))[:4 bytes] & (2**30 - 1)

so the same (pair, conversation, turn) gets the same seed whatever the batching, sharding, ordering or
resumption of a stage, and on every backend: hf seeds one torch.Generator per sampled row, vLLM gets
`SamplingParams(seed=...)` per request, the openai backend sends it as the request's `seed`. The `n`
samples drawn from one prompt take seeds ``seed, seed + 1, ..., seed + n - 1`` (vLLM's own convention for
a request with n > 1); seeds stay below 2**30 so that sum fits a signed 32-bit int.

A backend given no seeds derives each from the call's `Sampling.seed` and the prompt's content
(`content_seed`), which keeps the same property for callers that have no natural key.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

SEED_BITS = 30


def derive_seed(role_seed: int, stream: str, *key: Any) -> int:
    """The seed of the prompt identified by `key` in `stream` (e.g. "questioner_turn", pair, conv, turn)."""
    return _hash([int(role_seed), str(stream), *key])


def content_seed(seed: int, prompt: Any) -> int:
    """A prompt's seed when the caller names no key: a function of the call's seed and the prompt's content."""
    return _hash([int(seed), prompt])


def sample_seeds(seed: int, n: int) -> list[int]:
    """Seeds of the n samples drawn from one prompt whose seed is `seed`."""
    return [seed + k for k in range(n)]


def _hash(parts: list[Any]) -> int:
    blob = json.dumps(parts, ensure_ascii=False, sort_keys=True).encode("utf-8")
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "big") & ((1 << SEED_BITS) - 1)
