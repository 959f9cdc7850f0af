"""On-disk cache of every API response, so that a paid call is never made twice.

One file per call, named by a hash of everything that determines the answer (model, messages and every
sampling parameter, n and seed included). An entry is written to a temporary file in the same folder,
fsynced and renamed into place *before* the response is used, so a process killed at any moment leaves
either a complete entry or none (never a half-written one that could be mistaken for an answer).
Many processes (parallel Snakemake jobs, every stage) may share one cache folder: renames are atomic
and two writers of the same key write the same kind of content.

Layout of the cache folder (default `resources/api-cache`, see `resolve_cache_dir`)::

    v1/<key[:2]>/<key>.json   one entry per API call
    ledger.jsonl              tokens and money per call (stargate/api/accounting.py)
    batches/                  Batch API job state (stargate/api/batch.py)
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..log import get_logger
from ..records import write_json

log = get_logger(__name__)

DEFAULT_CACHE_DIR = "resources/api-cache"
CACHE_ENV = "STARGATE_API_CACHE"
KEY_VERSION = 1


def resolve_cache_dir(option: str | os.PathLike | None = None) -> Path:
    """The cache folder: the role option `cache_dir` if set, else $STARGATE_API_CACHE, else the default."""
    chosen = option or os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR
    return Path(chosen).expanduser()


def normalize_sampling(n: int, temperature: float, top_p: float, max_tokens: int, seed: int | None) -> dict:
    """Canonical sampling parameters: 0 and 0.0 must give the same key."""
    return {
        "n": int(n),
        "temperature": float(temperature),
        "top_p": float(top_p),
        "max_tokens": int(max_tokens),
        "seed": None if seed is None else int(seed),
    }


def request_key(model: str, messages: Sequence[dict], sampling: dict, extra: dict | None = None) -> str:
    """sha256 hex digest (64 characters) of the canonical JSON of one request.

    `sampling` must come from `normalize_sampling`. `extra` holds any other request field that changes
    the answer (it is left out of the hash when empty, so adding the argument changes no existing key).
    The server address is deliberately not part of the key: the same model behind a proxy, another port
    or a replica gives the same entry.
    """
    payload: dict[str, Any] = {
        "v": KEY_VERSION,
        "model": model,
        "messages": [dict(m) for m in messages],
        "sampling": sampling,
    }
    if extra:
        payload["extra"] = extra
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def atomic_write_json(path: Path, obj: Any) -> None:
    """A cache entry as one compact JSON line, through the project's one atomic writer (records.py)."""
    write_json(path, obj, indent=None)


class ApiCache:
    """Maps request keys to stored responses. Entries are JSON objects holding at least `response`."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = resolve_cache_dir(root)
        self.entries = self.root / f"v{KEY_VERSION}"

    def path(self, key: str) -> Path:
        if len(key) < 8 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"not a cache key: {key!r}")
        return self.entries / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        """The stored entry, or None. An unreadable entry (impossible unless edited by hand) is moved aside."""
        p = self.path(key)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            entry = json.loads(text)
            if not isinstance(entry, dict) or "response" not in entry:
                raise ValueError("no 'response' field")
        except ValueError as exc:
            bad = p.with_name(p.name + f".corrupt-{int(time.time())}")
            os.replace(p, bad)
            log.warning("cache entry %s is unreadable (%s); moved to %s and treated as missing", p, exc, bad)
            return None
        return entry

    def __contains__(self, key: str) -> bool:
        return self.path(key).exists()

    def put(self, key: str, entry: dict) -> Path:
        """Store an entry atomically (temp file + fsync + rename). Returns its path."""
        if "response" not in entry:
            raise ValueError("a cache entry needs a 'response' field")
        p = self.path(key)
        atomic_write_json(p, {"key": key, "written_at": time.time(), **entry})
        return p

    def keys(self) -> list[str]:
        if not self.entries.exists():
            return []
        return sorted(p.stem for p in self.entries.glob("*/*.json"))

    def __len__(self) -> int:
        return len(self.keys())
