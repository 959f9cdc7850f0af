"""The world's checked-in data: personas (a name and one value per attribute) and tasks per split, written to
data/world/*.json by `python -m stargate.world data/world` (tests/test_world.py keeps them in sync)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from .facts import ATTRIBUTES, TASKS

NAMES = (
    "Ana", "Ben", "Chloe", "David", "Elif", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Keiko", "Luis",
    "Maya", "Nils", "Olga", "Pavel", "Quinn", "Rosa", "Sami", "Tara", "Umar", "Vera", "Wen", "Yara",
)  # fmt: skip
SPLIT_PERSONAS = {"A": 4, "B": 4, "test": 6}  # 32 training pairs per split, 48 test pairs


def persona_text(name: str, attrs: dict[str, str]) -> str:
    return f"My name is {name}.\n" + "\n".join(f"- {k}: {v}" for k, v in attrs.items())


def make_personas(seed: int = 13) -> dict[str, list[str]]:
    """Personas per split: a name and one value per attribute, drawn with a private RNG."""
    rng = random.Random(seed)
    names = iter(NAMES)
    out: dict[str, list[str]] = {}
    for split, n in SPLIT_PERSONAS.items():
        out[split] = [
            persona_text(next(names), {a: rng.choice(sorted(vals)) for a, (_, vals) in ATTRIBUTES.items()})
            for _ in range(n)
        ]
    return out


def write_data(folder: str | Path) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # the text the checked-in files carry (kept as it is, so the files stay byte-identical)
    about = "Written by `python -m stargate.world data/world` from stargate/world/__init__.py; do not edit."
    tasks = {"_about": about, **{s: [t.text for t in TASKS] for s in SPLIT_PERSONAS}}
    personas = {"_about": about, **make_personas()}
    for name, obj in (("tasks", tasks), ("personas", personas)):
        (folder / f"{name}.json").write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
