"""Persona names: an explicit, reviewable step (the original's *_NAMES.json files were written by hand).

The original's names are full names as the persona gives them ("Leo Sato", spec §2.2), used verbatim in
"My name is {name}." `file` reads such a hand-made list (`{split}_NAMES.json`, parallel to the personas);
`regex` finds the name the persona introduces itself with; `llm` asks the persona_generator role for the
full name and accepts the answer only if it occurs in the persona text (else falls back to the regex).
Every record says how its name was found (`name_source`), so a reviewer can check the doubtful ones.
"""

from __future__ import annotations

import argparse
import re

from ..errors import InputError, StargateError
from ..log import get_logger
from ..prompts import load_prompt_set
from ..records import read_jsonl, write_jsonl
from ..released import names_not_in_text, read_names
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
    p.add_argument("--method", required=True, choices=["regex", "llm", "file"])
    p.add_argument(
        "--names-file", help="method file: JSON list of names parallel to the personas ({split}_NAMES.json)"
    )
    p.add_argument("--prompts", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--role")
    p.add_argument("--model")
    p.add_argument("--gpus", type=int, default=0)


def run(args: argparse.Namespace) -> None:
    recs = read_jsonl(args.personas, required=("persona_id", "split", "text"), nonempty=("text",))
    if args.method == "file":
        return _names_from_file(args, recs)
    llm_names: list[str | None] = [None] * len(recs)
    meta = {"stage": "names", "method": args.method}
    if args.method == "llm":
        if not (args.role and args.model):
            raise StargateError("data.names 'llm' needs the persona_generator role (--role/--model)")
        prompts = load_prompt_set(args.prompts)
        gen = generation.generate(
            args,
            "names",
            [prompts.name_extraction(r["text"]) for r in recs],
            [(r["persona_id"],) for r in recs],
            prompt_set=args.prompts,
            n=1,
            temperature=0.0,
        )
        meta.update(gen.meta)
        for i, (r, o) in enumerate(zip(recs, gen.outputs, strict=True)):
            reply = (o[0] or "").strip()  # None: refused by a content filter; the regex decides
            cand = reply.splitlines()[0].strip(" .\"'*") if reply else ""
            if cand and len(cand.split()) <= 4 and cand.lower() in r["text"].lower():
                llm_names[i] = cand
    out, sources = [], {"llm": 0, "regex": 0}
    for lineno, (r, llm) in enumerate(zip(recs, llm_names, strict=True), start=1):
        name, source = (llm, "llm") if llm else (regex_name(r["text"]), "regex")
        if not name:
            raise InputError(
                args.personas,
                f"cannot find the name of persona {r['persona_id']} (text starts {r['text'][:60]!r})",
                lineno,
                "start the persona with its name, e.g. 'Maya Patel is ...', or use data.names: llm",
            )
        sources[source] += 1
        out.append({**r, "name": name, "name_source": source})
    meta["name_sources"] = sources
    write_jsonl(args.output, out, meta)
    log.info("named %d personas (%s)", len(out), sources)


def _names_from_file(args: argparse.Namespace, recs: list[dict]) -> None:
    if not args.names_file:
        raise StargateError("names --method file needs --names-file (data.names.path in the config)")
    names = read_names(args.names_file, [r["text"] for r in recs], args.personas)
    # the original used its hand-made names as they are; a name absent from its persona is only reported
    unmatched = names_not_in_text(names, [r["text"] for r in recs])
    for i in unmatched:
        log.warning(
            "%s[%d]: name %r does not occur in persona %s (kept as given)",
            args.names_file,
            i,
            names[i],
            recs[i]["persona_id"],
        )
    out = [{**r, "name": n, "name_source": "file"} for r, n in zip(recs, names, strict=True)]
    write_jsonl(
        args.output,
        out,
        {
            "stage": "names",
            "method": "file",
            "source": str(args.names_file),
            "name_sources": {"file": len(out)},
            "names_not_in_text": [recs[i]["persona_id"] for i in unmatched],
        },
    )
    log.info("named %d personas from %s", len(out), args.names_file)
