"""What a config's data section says about tasks and personas, per split, as `stargate cost` estimates it
(and stargate.plan.hours counts the pairs of each split with it): counts and mean text lengths, from the
files where they exist, else typical lengths with a note."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..api.requests import CHARS_PER_TOKEN
from ..errors import InputError
from .personas import load_seeds

SPLITS = ("A", "B", "test")
TYPICAL_TASK_CHARS = 51  # mean of Dahoas/instruct-human-assistant-prompt rows 0-549 (reference data)
TYPICAL_SEED_PERSONA_CHARS = 624  # mean of the 24 rendered PRODIGy seed personas


class ConfigInputs:
    """What the config's data section says about tasks and personas, per split."""

    def __init__(self, config: dict, base_dir: Path, notes: list[str]):
        self.config, self.base_dir, self.notes = config, base_dir, notes
        data = config.get("data") or {}
        self.data = data
        self.splits = splits_used(config)
        self.task_counts, self.task_texts = self._tasks(data.get("tasks") or {})
        self.persona_counts, self.persona_texts = self._personas(data.get("personas") or {})

    def mean_task_chars(self, split: str) -> float:
        return _mean_len(self.task_texts.get(split) or [], TYPICAL_TASK_CHARS)

    def mean_persona_chars(self, split: str) -> float:
        generated = max_tokens(self.config, "persona_generator", 400) * CHARS_PER_TOKEN
        return _mean_len(self.persona_texts.get(split) or [], generated)

    def _tasks(self, spec: dict) -> tuple[dict[str, int], dict[str, list[str]]]:
        source = spec.get("source")
        if source == "file" or (source is None and spec.get("path")):
            obj = self._read_json(spec.get("path"), "data.tasks")
            lists = _split_lists(obj)
            return {s: len(v) for s, v in lists.items()}, lists
        rows = spec.get("rows")
        if isinstance(rows, dict):
            self.notes.append(
                f"data.tasks: {source or 'hf_dataset'} is not read for the estimate; task length "
                f"assumed {TYPICAL_TASK_CHARS} characters (mean of the paper's task rows)"
            )
            counts = {s: int(r[1]) - int(r[0]) for s, r in rows.items() if isinstance(r, list | tuple) and len(r) == 2}
            return counts, {}
        self.notes.append("data.tasks: no file and no rows; task counts unknown (0)")
        return {}, {}

    def _personas(self, spec: dict) -> tuple[dict[str, int], dict[str, list[str]]]:
        if spec.get("source") == "generate":
            counts = {s: int(c) for s, c in (spec.get("count") or {}).items()}
            if not counts:
                self.notes.append("data.personas.count missing; persona counts unknown (0)")
            mt = max_tokens(self.config, "persona_generator", 400)
            self.notes.append(
                f"personas are generated: their length is counted at persona_generator max_tokens ({mt} tokens)"
            )
            return counts, {}
        lists = _split_lists(self._read_json(spec.get("path"), "data.personas"))
        return {s: len(v) for s, v in lists.items()}, lists

    def seed_chars(self, split: str) -> float:
        """Mean length of the seed personas the personas stage uses for `split` (its own loader)."""
        rel = (self.data.get("personas") or {}).get("seeds")
        p = self._path(rel) if rel else None
        if p is None or not p.exists():
            self.notes.append(
                f"data.personas.seeds: {p or 'no path'}; seed length assumed "
                f"{TYPICAL_SEED_PERSONA_CHARS} characters (mean of the PRODIGy seeds)"
            )
            return TYPICAL_SEED_PERSONA_CHARS
        return _mean_len([str(s) for s in load_seeds(p, split)], TYPICAL_SEED_PERSONA_CHARS)

    def _path(self, rel: str) -> Path:
        return Path(rel) if Path(rel).is_absolute() else self.base_dir / rel

    def _read_json(self, rel: str | None, what: str) -> Any:
        if not rel:
            self.notes.append(f"{what}: no path; counts unknown (0)")
            return None
        p = self._path(rel)
        if not p.exists():
            self.notes.append(f"{what}: {p} does not exist; counts unknown (0)")
            return None
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InputError(
                p, f"not valid JSON ({exc})", fix=f"repair the file or point {what}.path elsewhere"
            ) from None


def max_tokens(config: dict, role: str, default: int) -> int:
    return int((((config.get("roles") or {}).get(role) or {}).get("sampling") or {}).get("max_tokens") or default)


def splits_used(config: dict) -> list[str]:
    t = int(config.get("iterations") or 1)
    train = ["A" if i % 2 == 0 else "B" for i in range(t)]
    return [s for s in ("A", "B") if s in train] + ["test"]


def _split_lists(obj: Any) -> dict[str, list[str]]:
    """{split: [texts]} of a tasks/personas file; other keys (`_about`) are notes, not data."""
    if not isinstance(obj, dict):
        return {}
    return {s: [str(t) for t in v] for s, v in obj.items() if s in SPLITS and isinstance(v, list)}


def _mean_len(texts: list[str], default: float) -> float:
    return sum(len(t) for t in texts) / len(texts) if texts else float(default)


def render(pset, kind: str, **fields: str) -> list[dict]:
    """The messages of a prompt set's template `kind` with these fields (a stand-in of typical size without one)."""
    if pset is not None:
        return getattr(pset, kind)(**fields)
    return [
        {"role": "system", "content": "x" * 300},
        {"role": "user", "content": "x" * 700 + "".join(fields.values())},
    ]


def stand_in(chars: float) -> str:
    """Stand-in text of a given length (its characters are what is measured)."""
    return "x" * round(chars)
