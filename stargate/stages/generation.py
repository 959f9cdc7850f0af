"""The skeleton every model-calling stage shares: open the role's backend, generate (or score) all items in
one call with one seed per item, and hand back the outputs with the artifact's meta.

A stage module supplies only what is special about it: its inputs, one prompt and one *key* per item, and
the records it writes. The key names the item under the seeding contract (`stargate.seeding`): the item's
seed is ``derive_seed(role sampling seed, stage, *key)``, so e.g. the same (pair, conversation, turn) gets
the same seed however the stage is sharded, batched or resumed, on every backend. The meta carries the
provenance (backend, model, sampling, prompt set), the counters the summary reads (`n_generated`,
`n_empty`, `n_refused`) and the backend's statistics (`backend_stats`: tokens, time and, for API backends,
calls, cache hits, retries, cost); the statistics are also logged when the job's backend closes.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ..backends import Backend, GenerationStats, Prompt, Sampling, Score, load_backend
from ..backends.base import PromptTooLong
from ..errors import StargateError
from ..log import get_logger
from ..prompts import provenance
from ..seeding import derive_seed
from .common import parse_json_arg

log = get_logger(__name__)

Key = tuple[Any, ...]


@dataclass
class Generated:
    """What a generation stage gets back: `n` completions per item (None where a backend reports a refusal)
    and the meta for its artifact."""

    outputs: list[list[str | None]]
    meta: dict[str, Any]


@dataclass
class Scored:
    scores: list[Score]
    meta: dict[str, Any]


def read_role(args: argparse.Namespace) -> dict[str, Any]:
    role = parse_json_arg(args.role, "--role")
    role["options"] = dict(role.get("options") or {})
    return role


def open_role(args: argparse.Namespace, stage: str, role: dict[str, Any]) -> Backend:
    """The role's backend, loaded once for the job; the job's GPU count and the stage are runtime facts."""
    log.info("stage %s: backend=%s model=%s", stage, role.get("backend"), args.model)
    gpus = int(getattr(args, "gpus", 0) or 0)
    return load_backend(role, args.model, gpus=gpus, stage=stage, prompt_set=getattr(args, "prompts", None))


def sampling_of(role: dict[str, Any], **overrides: Any) -> Sampling:
    return Sampling.from_config(role.get("sampling") or {}, **overrides)


def seeds_for(stage: str, sampling: Sampling, keys: Sequence[Key]) -> list[int]:
    return [derive_seed(sampling.seed, stage, *key) for key in keys]


def generate(
    args: argparse.Namespace,
    stage: str,
    prompts: Sequence[Prompt],
    keys: Sequence[Key],
    *,
    prompt_set: str | None = None,
    backend: Callable[[], Backend] | None = None,
    **overrides: Any,
) -> Generated:
    """Generate for every (prompt, key) with the role in `args.role` (`overrides`: sampling fields, e.g. n).
    No items: no model is loaded, and the meta still says so. `backend`: a function handing back the role's
    backend, opened once by the caller for several calls (the simulate stage); its stats in the meta are this
    call's only."""
    if len(prompts) != len(keys):
        raise ValueError(f"{stage}: {len(prompts)} prompts but {len(keys)} keys")
    seen: set[Key] = set()
    for key in keys:
        if key in seen:
            raise StargateError(
                f"{stage}: two input records are the same item {key!r} (each item's seed comes "
                "from its key); remove the duplicate from the stage's input file"
            )
        seen.add(key)
    role = read_role(args)
    sampling = sampling_of(role, **overrides)
    if not prompts:
        return Generated([], _meta(stage, GenerationStats(), role, args.model, sampling, prompt_set, None))
    if backend is not None:
        shared = backend()
        outputs, mine = _counted(shared, lambda b: _generate(b, stage, prompts, sampling, keys))
        return Generated(outputs, _meta(stage, mine, role, args.model, sampling, prompt_set, shared))
    own = open_role(args, stage, role)
    with own:
        outputs = _generate(own, stage, prompts, sampling, keys)
    return Generated(outputs, _meta(stage, own.stats, role, args.model, sampling, prompt_set, own))


def _generate(backend: Backend, stage: str, prompts: Sequence[Prompt], sampling: Sampling, keys: Sequence[Key]):
    """`backend.generate` with one seed per item; a prompt too long for the model's context is named by its
    item (the backend knows its index only)."""
    try:
        return backend.generate(prompts, sampling, seeds_for(stage, sampling, keys))
    except PromptTooLong as exc:
        raise exc.for_item(f"{stage}: {_item(keys[exc.index])}") from None


def _item(key: Key) -> str:
    """An item's key as the user reads it: a pair id ("task|persona") first when it has one."""
    if key and isinstance(key[0], str) and "|" in key[0]:
        rest = f" {tuple(key[1:])}" if len(key) > 1 else ""
        return f"pair {key[0]}{rest}"
    return "item " + ", ".join(str(k) for k in key)


def next_turn(
    args: argparse.Namespace,
    stage: str,
    speaker: str,
    convs: list[dict],
    inputs: Sequence[Prompt],
    turn: int,
    backend: Backend | None = None,
) -> Generated:
    """One reply per conversation, appended in place as `speaker`'s turn. Seed key: the conversation and
    the turn (stargate.seeding), so a conversation's text does not depend on which others share the job."""
    gen = generate(
        args,
        stage,
        inputs,
        [(c["pair"], c["conv"], turn) for c in convs],
        prompt_set=args.prompts,
        backend=backend,
        n=1,
    )
    for c, o in zip(convs, gen.outputs, strict=True):
        c["turns"] = c["turns"] + [{"role": speaker, "text": o[0]}]
    return gen


def score(
    args: argparse.Namespace,
    stage: str,
    contexts: Sequence[Prompt],
    targets: Sequence[str],
    *,
    prompt_set: str | None = None,
    backend: Backend | None = None,
) -> Scored:
    """Summed log p(target | context) for every pair with the role in `args.role`. `backend`: the role's
    backend, opened by the caller for more work with the same model (left open; its stats are this call's)."""
    role = read_role(args)
    if backend is not None:
        scores, mine = _counted(backend, lambda b: b.score(contexts, targets))
        return Scored(scores, _meta(stage, mine, role, args.model, None, prompt_set, backend))
    own = open_role(args, stage, role)
    with own:
        scores = own.score(contexts, targets)
    return Scored(scores, _meta(stage, own.stats, role, args.model, None, prompt_set, own))


T = TypeVar("T")


def _counted(backend: Backend, call: Callable[[Backend], T]) -> tuple[T, GenerationStats]:
    """`call(backend)` on a backend the caller keeps open, with this call's stats apart from the earlier ones
    (merged back into the backend's after)."""
    before, backend.stats = backend.stats, GenerationStats()
    try:
        return call(backend), backend.stats
    finally:
        backend.stats = before.merged(backend.stats)


def _meta(
    stage: str,
    stats: GenerationStats,
    role: dict,
    model: str,
    sampling: Sampling | None,
    prompt_set: str | None,
    backend: Backend | None,
) -> dict[str, Any]:
    """Provenance and counters for an artifact's sidecar; empty generations are reported, not dropped."""
    backend_stats = stats.to_dict()
    meta: dict[str, Any] = {"stage": stage, "backend": role.get("backend"), "model": str(model)}
    if sampling is not None:  # a generation, not a scoring, job
        meta.update(
            sampling=sampling.to_dict(), n_generated=stats.n_outputs, n_empty=stats.n_empty, n_refused=stats.n_refused
        )
    meta["backend_stats"] = backend_stats
    if prompt_set:  # prompt_set, prompt_files_sha256, chat_template_sha256, tokenizer_sha256
        meta.update(provenance(prompt_set, getattr(backend, "tokenizer", None)))
    log.info("%s: backend stats %s", stage, json.dumps(backend_stats, sort_keys=True))
    if stats.n_empty:
        log.warning(
            "%s: %d of %d generations were empty (kept, counted in the artifact's .meta.json)",
            stage,
            stats.n_empty,
            stats.n_outputs,
        )
    if stats.n_refused:
        log.warning(
            "%s: %d of %d completions were refused by a content filter (counted in the .meta.json)",
            stage,
            stats.n_refused,
            stats.n_outputs,
        )
    return meta
