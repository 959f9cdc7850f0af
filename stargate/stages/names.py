"""Persona names: an explicit, reviewable step (the original's *_NAMES.json files were written by hand).

`regex` finds the name the persona introduces itself with; `llm` asks the persona_generator role and
accepts the answer only if it occurs in the persona text (else falls back to the regex). Every record
says how its name was found (`name_source`), so a reviewer can check the doubtful ones.
"""

from __future__ import annotations

import argparse
import re

from ..errors import InputError, StargateError
from ..log import get_logger
from ..prompts import load_prompt_set
from ..records import read_jsonl, write_jsonl
from . import generation

log = get_logger(__name__)

_NAME = r"([A-Z][a-zA-Z'\-]+(?:\s+(?:[A-Z][a-zA-Z'\-]+|de|van|von|da|di|del|la|le)){0,3})"
_PATTERNS = [
    re.compile(r"\b(?:I'm|I am|My name is|my name's|Meet|named|called)\s+" + _NAME),
    re.compile(r"^\W*(?:\d+\.\s*)?(?:Name:\s*)?" + _NAME + r"\s*(?:,|\(|is\b|was\b|-|–|:)"),
]
_NOT_NAMES = {"The", "This", "A", "An", "He", "She", "They", "Our", "My", "Persona", "User", "Name", "I"}


def regex_name(text: str) -> str | None:
    for pattern in _PATTERNS:
        for m in pattern.finditer(text.strip()):
            name = m.group(1).strip()
            if name.split()[0] not in _NOT_NAMES:
                # "BIANCA" (PRODIGy style) -> "Bianca"
                return " ".join(w.capitalize() if w.isupper() and len(w) > 1 else w for w in name.split())
    return None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--personas", required=True, help="persona texts (JSONL from the personas stage)")
    p.add_argument("--method", required=True, choices=["regex", "llm"])
    p.add_argument("--prompts", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--role")
    p.add_argument("--model")
    p.add_argument("--gpus", type=int, default=0)


def run(args: argparse.Namespace) -> None:
    recs = read_jsonl(args.personas, required=("persona_id", "split", "text"), nonempty=("text",))
    llm_names: list[str | None] = [None] * len(recs)
    meta = {"stage": "names", "method": args.method}
    if args.method == "llm":
        if not (args.role and args.model):
            raise StargateError("data.names 'llm' needs the persona_generator role (--role/--model)")
        prompts = load_prompt_set(args.prompts)
        gen = generation.generate(args, "names", [prompts.name_extraction(r["text"]) for r in recs],
                                  [(r["persona_id"],) for r in recs], prompt_set=args.prompts, n=1, temperature=0.0)
        meta.update(gen.meta)
        for i, (r, o) in enumerate(zip(recs, gen.outputs, strict=True)):
            cand = o[0].strip().splitlines()[0].strip(" .\"'*") if o[0].strip() else ""
            if cand and len(cand.split()) <= 4 and cand.lower() in r["text"].lower():
                llm_names[i] = cand
    out, sources = [], {"llm": 0, "regex": 0}
    for lineno, (r, llm) in enumerate(zip(recs, llm_names, strict=True), start=1):
        name, source = (llm, "llm") if llm else (regex_name(r["text"]), "regex")
        if not name:
            raise InputError(
                args.personas, f"cannot find the name of persona {r['persona_id']} (text starts {r['text'][:60]!r})",
                lineno, "start the persona with its name, e.g. 'Maya Patel is ...', or use data.names: llm",
            )
        sources[source] += 1
        out.append({**r, "name": name, "name_source": source})
    meta["name_sources"] = sources
    write_jsonl(args.output, out, meta)
    log.info("named %d personas (%s)", len(out), sources)
