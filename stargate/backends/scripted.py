"""A deterministic backend with no model: replies come from templates chosen by rules over the prompt.

For tests and dry runs of the stages (`backend: scripted` in a role). Each reply is a Python format
template with the fields `{last}` (the content of the prompt's last message, or the whole raw string),
`{k}` (the sample's index among the prompt's n) and `{seed}` (the sample's seed under the seeding contract,
so a test can see which seed a prompt got). The first rule whose `match` regular expression is found in the
prompt's text (every message's content, joined by newlines) gives the template; else `reply` does. A rule
whose reply is null stands for a refusal: the completion is None, as the openai backend reports a
content-filter refusal with `refusals: count`.
`score` returns `score_per_token` times the number of whitespace-separated words of the target.
With `program: "module:function"` every reply is computed in code instead, `function(prompt, k, seed)`:
a user simulated by a program (stargate/world), through the same role interface as any model.
"""

from __future__ import annotations

import importlib
import json
import re
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError, StargateError
from ..seeding import sample_seeds
from .base import Backend, Prompt, Sampling, Score
from .options import ScriptedOptions, parse_options

FIELDS = {"last", "k", "seed"}


def _check_template(template: Any, where: str) -> str:
    if not isinstance(template, str):
        raise StargateError(f"{where} must be a string, got {type(template).__name__}")
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise StargateError(
            f"{where} is not a valid template ({exc}); write literal braces as {{{{ and }}}}"
        ) from None
    unknown = sorted(names - FIELDS)
    if unknown:
        raise StargateError(f"{where} uses unknown field(s) {', '.join(unknown)} (known: last, k, seed)")
    return template


def _compile_rules(rules: Any, where: str) -> list[tuple[re.Pattern, str | None]]:
    if not isinstance(rules, list):
        raise StargateError(f"{where} must be a list of {{match, reply}} objects")
    out = []
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict) or set(rule) != {"match", "reply"}:
            raise StargateError(f"{where}[{i}] must be an object with exactly the keys 'match' and 'reply'")
        try:
            pattern = re.compile(rule["match"])
        except (re.error, TypeError) as exc:
            raise StargateError(f"{where}[{i}].match is not a regular expression: {exc}") from None
        reply = rule["reply"]
        out.append((pattern, None if reply is None else _check_template(reply, f"{where}[{i}].reply")))
    return out


def _load_rules_file(path: str) -> list[tuple[re.Pattern, str | None]]:
    try:
        rules = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(path, f"cannot read the scripted backend's rules ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON ({exc.msg})", exc.lineno) from None
    return _compile_rules(rules, f"{path}: rule")


def _load_program(spec: str):
    module, _, name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name) if name else None
    except (ImportError, AttributeError) as exc:
        raise StargateError(f"scripted option program {spec!r} cannot be loaded ({exc})") from None
    if not callable(fn):
        raise StargateError(f"scripted option program {spec!r} must name a function as module:function")
    return fn


class ScriptedBackend(Backend):
    name = "scripted"

    def __init__(self, model: str, options: ScriptedOptions | dict | None = None, *, gpus: int = 0) -> None:
        super().__init__()
        opts = parse_options(ScriptedOptions, options, "scripted")
        self.model = model
        self.reply = _check_template(opts.reply, "scripted option reply")
        self.rules = _compile_rules(opts.rules, "scripted option rules")
        if opts.rules_file:
            self.rules += _load_rules_file(opts.rules_file)
        self.score_per_token = float(opts.score_per_token)
        self.program = _load_program(opts.program) if opts.program else None

    def generate(
        self, prompts: Sequence[Prompt], sampling: Sampling, seeds: Sequence[int] | None = None
    ) -> list[list[str | None]]:
        outputs: list[list[str | None]] = []
        for prompt, seed in zip(prompts, self._seeds(prompts, sampling, seeds), strict=True):
            if isinstance(prompt, str):
                text = last = prompt
            else:
                text = "\n".join(str(m.get("content", "")) for m in prompt)
                last = str(prompt[-1].get("content", "")) if prompt else ""
            if self.program is not None:
                outputs.append([self.program(prompt, k, s) for k, s in enumerate(sample_seeds(seed, sampling.n))])
                continue
            template = next((t for pattern, t in self.rules if pattern.search(text)), self.reply)
            outputs.append(
                [
                    None if template is None else template.format(last=last, k=k, seed=s)
                    for k, s in enumerate(sample_seeds(seed, sampling.n))
                ]
            )
        self.stats.n_tokens_out += sum(len(o.split()) for outs in outputs for o in outs if o is not None)
        return self._count(outputs)

    def score(self, contexts: Sequence[Prompt], targets: Sequence[str]) -> list[Score]:
        if len(contexts) != len(targets):
            raise StargateError(f"score: {len(contexts)} contexts but {len(targets)} targets")
        scores = [Score(self.score_per_token * len(t.split()), len(t.split())) for t in targets]
        self._count_scores(scores)
        return scores
