"""Gold responses: the Oracle sees the full persona and the task (never a conversation), spec §2.4.

With `--gold-file` no oracle is called: the authors' released gold responses of the split (a dict
"prompt-{i} persona-{j}" -> [response], i and j indexing the split's task and persona lists) are checked
to cover exactly the split's pairs and converted. A refused (None) or blank reply is dropped and counted
(`dropped`), and the stage fails when more than --max-dropped-fraction of the pairs are dropped. Under a
prompt set with `blank_gold: keep` (paper_v1) a blank reply is kept instead, as the original kept it: its
scorer summed log p over `gold.strip()` = no token, i.e. 0, for every conversation of the pair, and the pair
went on to top-1 and training; such pairs are listed in the sidecar (`blank`) and logged.
"""

from __future__ import annotations

import argparse

from ..errors import StargateError
from ..log import get_logger
from ..prompts import load_prompt_set
from ..records import write_jsonl
from ..released import gold_key, read_gold
from . import generation
from .common import Pair, add_data_arguments, add_role_arguments, load_pairs, load_personas, load_tasks
from .dropped import Dropped, add_cap_argument

log = get_logger(__name__)

CAP_KEY = "data.oracle.max_dropped_fraction"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_arguments(p)
    p.add_argument("--output", required=True)
    add_role_arguments(p, required=False)
    p.add_argument(
        "--gold-file",
        help="the authors' gold responses of this split (JSON dict keyed "
        "'prompt-i persona-j'); no oracle call is made",
    )
    add_cap_argument(p, 0.0, CAP_KEY)


def gold_from_file(path: str, tasks_path: str, personas_path: str, pairs: list[Pair]) -> list[tuple[str, str]]:
    """(released key, gold text) of each pair, by the pair's position in the split's task and persona lists."""
    t_index = {t["task_id"]: i for i, t in enumerate(load_tasks(tasks_path))}
    p_index = {p["persona_id"]: j for j, p in enumerate(load_personas(personas_path))}
    gold = read_gold(path, len(t_index), len(p_index))
    ij = [(t_index[p.task_id], p_index[p.persona_id]) for p in pairs]
    return [(gold_key(i, j), gold[(i, j)]) for i, j in ij]


def run(args: argparse.Namespace) -> None:
    pairs = load_pairs(args.tasks, args.personas)
    keep_blank = bool(args.prompts) and load_prompt_set(args.prompts).keeps_blank_gold
    if args.gold_file:
        keyed = gold_from_file(args.gold_file, args.tasks, args.personas, pairs)
        released_keys, texts = [k for k, _ in keyed], [t for _, t in keyed]
        meta = {"stage": "oracle", "source": "file", "gold_file": str(args.gold_file)}
    elif not (args.role and args.model):
        raise StargateError("oracle: give --gold-file, or --role and --model to generate gold responses")
    else:
        prompts = load_prompt_set(args.prompts)
        gen = generation.generate(
            args,
            "oracle",
            [prompts.oracle(p.persona, p.task) for p in pairs],
            [(p.key,) for p in pairs],
            prompt_set=args.prompts,
            n=1,
        )
        released_keys, texts = [None] * len(pairs), [o[0] for o in gen.outputs]
        meta = {**gen.meta, "source": "generate"}
    dropped, recs, blank = Dropped(len(pairs)), [], []
    for p, text, released_key in zip(pairs, texts, released_keys, strict=True):
        if text is None:
            dropped.refused.append(p.key)
        elif not text.strip() and not keep_blank:  # an empty gold answer cannot be scored
            dropped.unusable.append(p.key)
        else:
            if not text.strip():
                blank.append(p.key)
            rec = {"pair": p.key, "task_id": p.task_id, "persona_id": p.persona_id, "text": text}
            if released_key:
                rec["released_key"] = released_key  # provenance: the authors' "prompt-i persona-j"
            recs.append(rec)
    dropped.check(args.max_dropped_fraction, "gold responses", CAP_KEY)
    if blank:
        meta["blank"] = blank
        log.warning(
            "%d blank gold response(s) kept (prompt set %s: blank_gold keep), scored as the original scored them: "
            "log p 0 over no token; e.g. %s",
            len(blank),
            args.prompts,
            blank[0],
        )
    write_jsonl(args.output, recs, {**meta, **dropped.meta(args.max_dropped_fraction)})
    log.info("wrote %d gold responses", len(recs))
