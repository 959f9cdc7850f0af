"""The authors' released data in its native formats (spec §1.4, §2, §7), read and checked for alignment.

The original pipeline keeps every one-time input as plain JSON under `{base}/{kind}/star-2-bsft/`:
- tasks: a JSON list of task strings per split (`prompts/.../{split}.json`), or one longer list that the
  splits are row ranges of (the pilot `instruct-questions/A.json`: A = [0:250], B = [250:500], test = [500:550]);
- personas: a JSON list of persona texts per split (`personas/.../{split}.json`);
- names: `{split}_NAMES.json`, a JSON list of names parallel to the persona list (written by hand);
- gold responses: a dict `"prompt-{i} persona-{j}" -> [response]` per split, `i` indexing the split's task
  list and `j` its persona list (`gold-responses/.../{split}.json`).

Nothing here converts silently: every misalignment (a missing or extra key, a count that does not
match, a names list that is not parallel) stops with the file, the key and the fix.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import InputError, StargateError
from .log import get_logger

log = get_logger(__name__)

GOLD_KEY = re.compile(r"^prompt-(\d+) persona-(\d+)$")


def data_path(data: dict[str, Any], kind: str, split: str, resolve: Callable[[str], str] = str) -> str:
    """The file `data.<kind>.path` names for a split: {split} filled in; a relative path is read from
    `data.released_dir` when the config has that key (null there means "name it"), else `resolve`d
    (the workflow resolves against the working directory, then the repository)."""
    path = data[kind]["path"].replace("{split}", split)
    if os.path.isabs(path) or "released_dir" not in data:
        return resolve(path)
    if not data["released_dir"]:
        raise StargateError(
            f"data.released_dir: data.{kind}.path '{path}' is read from the authors' data folder; name it, e.g. "
            "snakemake --configfile CONFIG --config 'data={released_dir: /path/to/released-data}'"
        )
    return os.path.join(resolve(data["released_dir"]), path)


def per_split_file(data: dict[str, Any], kind: str) -> bool:
    """Whether data.<kind>.path names one file per split (it contains {split})."""
    return "{split}" in data[kind].get("path", "")


def gold_key(task_index: int, persona_index: int) -> str:
    """The original's pair key (single space), e.g. 'prompt-3 persona-0'."""
    return f"prompt-{task_index} persona-{persona_index}"


SPLITS = ("A", "B", "test")
# what a file of each kind holds, and the config key that names it (for the messages)
EXPECTED = {
    "tasks": ('a JSON list of task strings, or an object {"A": [...], "B": [...], "test": [...]}', "data.tasks.path"),
    "personas": (
        'a JSON list of persona texts, or an object {"A": [...], "B": [...], "test": [...]}',
        "data.personas.path",
    ),
}


def read_json(path: str | Path, what: str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"{what} file does not exist", fix=f"check the data path of the {what} in the config")
    expected, key = EXPECTED.get(what, (f"one JSON document of {what}", f"the {what} file"))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not UTF-8 text ({exc.reason})") from None
    if not text.strip():
        size = path.stat().st_size
        raise InputError(
            path,
            f"file is empty ({size} byte{'s' if size != 1 else ''}{', whitespace only' if size else ''}): "
            f"{key} expects {expected}",
            fix=f"write the {what} into {path.name}, or point {key} at the right file",
        )
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and _looks_like_jsonl(text):
            raise InputError(
                path,
                f"this looks like JSONL (one JSON value per line); this key ({key}) expects one JSON document: "
                f"{expected}",
                fix="put the values into one JSON list (or one object of splits) instead of one per line",
            ) from None
        raise InputError(path, f"not valid JSON ({exc.msg})", exc.lineno) from None


def _looks_like_jsonl(text: str) -> bool:
    """Whether the first two non-blank lines are each a complete JSON value."""
    lines = [line for line in text.splitlines() if line.strip()][:2]
    if len(lines) < 2:
        return False
    try:
        for line in lines:
            json.loads(line)
    except json.JSONDecodeError:
        return False
    return True


def check_split_keys(data: dict, path: str | Path, what: str) -> None:
    """An object of splits has only the keys A, B, test (and comments: keys starting with "_"); any other
    key is a typo whose items would be silently ignored (`tset`, or a split `C`)."""
    unknown = [k for k in data if k not in SPLITS and not str(k).startswith("_")]
    if not unknown:
        return
    hints = []
    for k in unknown:
        close = difflib.get_close_matches(str(k), SPLITS, n=1) or [s for s in SPLITS if s.lower() == str(k).lower()]
        hints.append(f"'{k}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    raise InputError(
        path,
        f"unknown split key(s) {', '.join(hints)} in this object of {what} splits: its items would be ignored",
        fix=f'the splits are {", ".join(SPLITS)}: rename the key, or start it with "_" to keep it as a comment',
    )


def string_list(data: Any, path: str | Path, what: str, where: str = "", strip: bool = True) -> list[str]:
    """A non-empty JSON list of non-blank strings. Tasks are stripped (every consumer upstream called
    .strip(), spec §2.1); the authors' personas and names are kept verbatim, because the paper_v1 prompts
    strip them only where the original did."""
    if not isinstance(data, list) or not data:
        raise InputError(
            path,
            f"{where + ' ' if where else ''}must be a non-empty JSON list of {what} strings, "
            f"got {type(data).__name__}",
        )
    for i, item in enumerate(data):
        if not isinstance(item, str) or not item.strip():
            raise InputError(
                path, f"{where or 'item '}[{i}] is empty or not a string", fix=f"give every {what} as text"
            )
    return [s.strip() for s in data] if strip else list(data)


def duplicates(items: list[str]) -> list[tuple[int, int]]:
    """(first index, repeat index) of every item that repeats an earlier one (compared stripped)."""
    first: dict[str, int] = {}
    return [(first[k], i) for i, k in enumerate(s.strip() for s in items) if first.setdefault(k, i) != i]


def refuse_duplicates(items: list[str], path: str | Path, what: str, where: str = "") -> list[str]:
    dup = duplicates(items)
    if dup:
        pairs = ", ".join(f"[{a}] = [{b}]" for a, b in dup[:3]) + (" ..." if len(dup) > 3 else "")
        raise InputError(
            path,
            f"{where + ' ' if where else ''}has {len(dup)} duplicated {what}(s): {pairs}",
            fix=f"remove or rewrite the repeated {what}s; each {what} is simulated once per pair",
        )
    return items


def slice_rows(items: list[str], rows: list[int], path: str | Path, split: str) -> list[str]:
    """Rows [lo, hi) of one task list: how the original cut A, B and test from the same extraction."""
    lo, hi = rows
    if not 0 <= lo < hi:
        raise InputError(
            path,
            f"rows {rows} of split {split} are not a range [lo, hi) with lo < hi",
            fix=f"set data.tasks.rows.{split} to [lo, hi]",
        )
    if hi > len(items):
        raise InputError(
            path,
            f"rows {rows} of split {split} run past the list's {len(items)} items",
            fix=f"the list is shorter than data.tasks.rows.{split} expects: check the file or the rows",
        )
    return items[lo:hi]


def read_tasks(path: str | Path, split: str, rows: list[int] | None, per_split_file: bool) -> list[str]:
    """One split's tasks from a JSON list (per-split file, or a slice of one list) or a {split: [...]} object."""
    data = read_json(path, "tasks")
    if isinstance(data, dict):
        check_split_keys(data, path, "task")
        if rows is not None:
            raise InputError(
                path,
                "is an object of splits, so data.tasks.rows does not apply",
                fix="remove data.tasks.rows, or point data.tasks.path at one JSON list of tasks",
            )
        if split not in data:
            raise InputError(
                path,
                f"no key '{split}'",
                fix='the file must be an object {"A": [...], "B": [...], "test": [...]} of tasks',
            )
        return refuse_duplicates(string_list(data[split], path, "task", split), path, "task", split)
    items = string_list(data, path, "task")
    if rows is not None:
        items = slice_rows(items, rows, path, split)
    elif not per_split_file:
        raise InputError(
            path,
            "is one JSON list of tasks, but the config says neither which rows each split takes "
            "nor that the file holds one split",
            fix="add data.tasks.rows {A: [lo, hi], ...}, or put {split} in data.tasks.path",
        )
    # the original's list formats are kept as they are: the authors' task lists repeat a few tasks
    dup = duplicates(items)
    if dup:
        log.warning("%s: split %s repeats %d task(s) (kept, as in the original)", path, split, len(dup))
    return items


def read_personas(path: str | Path, split: str, per_split_file: bool) -> list[str]:
    """One split's persona texts: the original's JSON list per split, or a {split: [...]} object."""
    data = read_json(path, "personas")
    if isinstance(data, dict):
        check_split_keys(data, path, "persona")
        if split not in data:
            raise InputError(
                path,
                f"no key '{split}'",
                fix='the file must be a JSON list of personas, or {"A": [...], "B": [...], "test": [...]}',
            )
        return refuse_duplicates(string_list(data[split], path, "persona", split), path, "persona", split)
    if not per_split_file:
        raise InputError(
            path,
            "is one JSON list of personas, but the path names no split, so every split would get the same personas",
            fix="put {split} in data.personas.path (e.g. personas/{split}.json)",
        )
    return refuse_duplicates(string_list(data, path, "persona", strip=False), path, "persona")


def read_names(path: str | Path, personas: list[str], personas_source: str | Path) -> list[str]:
    """The hand-made `{split}_NAMES.json`: one name per persona, in the persona list's order."""
    names = string_list(read_json(path, "names"), path, "name", strip=False)
    if len(names) != len(personas):
        raise InputError(
            path,
            f"has {len(names)} names but {personas_source} has {len(personas)} personas",
            fix="the names list must be parallel to the persona list: one name per persona, same order "
            "(is it the names file of another split?)",
        )
    return names


def names_not_in_text(names: list[str], personas: list[str]) -> list[int]:
    """Indices whose name does not occur in its persona. A hint only: the pilot's hand-made A_NAMES.json
    spells persona 6 'Roza Alvarez' where the persona says 'Rosa', and the original used the file as is."""
    return [i for i, (n, p) in enumerate(zip(names, personas, strict=True)) if n.strip().lower() not in p.lower()]


def read_gold(path: str | Path, n_tasks: int, n_personas: int) -> dict[tuple[int, int], str]:
    """The original's gold responses of one split, keyed (task index, persona index), checked to cover
    exactly the split's tasks x personas. Values are returned verbatim (leading spaces included)."""
    data = read_json(path, "gold responses")
    if not isinstance(data, dict) or not data:
        raise InputError(
            path, f'must be a JSON object {{"prompt-i persona-j": [response]}}, got {type(data).__name__}'
        )
    gold: dict[tuple[int, int], str] = {}
    extra = []
    for key, value in data.items():
        m = GOLD_KEY.match(key)
        if not m:
            raise InputError(
                path,
                f"key '{key}' is not of the form 'prompt-{{i}} persona-{{j}}'",
                fix='the gold file must be the original\'s dict keyed "prompt-i persona-j"',
            )
        i, j = int(m.group(1)), int(m.group(2))
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if not isinstance(value, str):
            raise InputError(
                path,
                f"key '{key}': the value must be a list holding one response string",
                fix='write each value as ["response text"]',
            )
        if i >= n_tasks or j >= n_personas:
            extra.append(key)
            continue
        gold[(i, j)] = value
    if extra:
        raise InputError(
            path,
            f"{len(extra)} key(s) name a task or persona the split does not have "
            f"({n_tasks} tasks x {n_personas} personas), e.g. '{extra[0]}'",
            fix="use the gold file of the same split as the tasks and personas, or fix their rows/count",
        )
    missing = [gold_key(i, j) for j in range(n_personas) for i in range(n_tasks) if (i, j) not in gold]
    if missing:
        raise InputError(
            path,
            f"{len(missing)} of the split's {n_tasks * n_personas} pairs have no gold response, e.g. '{missing[0]}'",
            fix='every "prompt-i persona-j" of the split\'s tasks x personas must be present: use the '
            "complete gold file of this split",
        )
    return gold
