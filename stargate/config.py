"""The experiment's one home: its schema (with every default), the loading of a config, the checks a
JSON schema cannot express, and the names that give the experiment its meaning (conditions, splits).

`config/schema.yaml` defines, defaults and documents every key once. `load_config` (used by the
Snakefile through rules/common.smk and by every command that reads a config file) validates a config
against it and fills the defaults in, so no rule, stage or argparse default restates a value.
"""

from __future__ import annotations

import copy
import math
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .errors import StargateError

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "config" / "schema.yaml"

# The five log-prob conditions (spec §4.2). The first three depend on m_t's conversations and are scored
# for every iteration; the controls involve no conversation, so they are scored once per pair.
CONDITIONS_PER_ITERATION = ("qa-experimental", "pos-control-1", "shuffled")
CONDITIONS_CONTROL = ("neg-control", "pos-control-2")
CONDITIONS = CONDITIONS_PER_ITERATION + CONDITIONS_CONTROL
SELECTION_CONDITION = "qa-experimental"  # the condition whose scores pick the top-k conversations
# Win-rate protocol axes (spec §6.2; evaluation.winrate.variants): which conversation is answered, who
# answers it, and where m_t's answer is shown to the judge (the judge protocols of
# stargate.evaluation.protocols). A variant's name joins its three values.
WINRATE_CONVERSATIONS = ("random", "top1")
WINRATE_ANSWERERS = ("mt", "m0")
SPLITS = ("A", "B", "test")
FIXED_MODEL_ROLES = ("questioner", "answerer", "scorer")  # always m_t / m0: no `model` key


def train_split(t: int) -> str:
    """Iteration t simulates split A when t is even, B when odd (spec §1.3)."""
    return "A" if int(t) % 2 == 0 else "B"


@cache
def schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))


def _with_defaults(cls):
    """A validator class that also writes each `default` of the schema into the instance."""
    validate_properties = cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, subschema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, subschema)

    return jsonschema.validators.extend(cls, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def defaults_of(*path: str) -> dict[str, Any]:
    """The defaults of one object of the schema, e.g. defaults_of("training")."""
    node = schema()
    for key in path:
        node = node["properties"][key]
    return {k: copy.deepcopy(v["default"]) for k, v in node.get("properties", {}).items() if "default" in v}


def validate_slice(instance: dict[str, Any], *path: str, where: str | None = None) -> dict[str, Any]:
    """Validate one slice (e.g. the `training` mapping of a by-hand call) and fill its defaults."""
    node = schema()
    for key in path:
        node = node["properties"][key]
    sub = {**node, "$defs": schema()["$defs"]}
    out = copy.deepcopy(instance)
    _raise_first(_Validator(sub).iter_errors(out), where or ".".join(path), prefix=".".join(path))
    return out


def _describe(e: jsonschema.ValidationError, prefix: str) -> str:
    """One line per problem: the key's dotted path and what is wrong, without a schema dump."""
    key = ".".join([prefix] * bool(prefix) + [str(p) for p in e.absolute_path]) or "(top level)"
    if e.validator == "additionalProperties":
        allowed = ", ".join(e.schema.get("properties", {}))
        extra = sorted(set(e.instance) - set(e.schema.get("properties", {})))
        return f"{key}: unknown key(s) {', '.join(extra)} (allowed: {allowed})"
    if e.validator == "required":
        return f"{key}: {e.message}"
    msg = e.message if len(e.message) < 200 else e.message[:200] + "..."
    return f"{key}: {msg}"


PARTIAL_CONFIG_HINT = (
    "a --configfile REPLACES config/config.yaml (it is not merged into it), so it must hold every "
    "top-level key: copy config/config.yaml and edit the copy, or change single keys on the command "
    "line with --config key=value"
)


def _raise_first(errors, source: str, prefix: str = "") -> None:
    errs = sorted(errors, key=lambda e: [str(p) for p in e.absolute_path])
    if not errs:
        return
    # top-level keys missing: one line naming them all, and why (a partial --configfile, usually)
    top_missing = [e for e in errs if e.validator == "required" and not e.absolute_path and not prefix]
    lines = []
    if top_missing:
        names = [e.message.split("'")[1] for e in top_missing]
        lines.append(f"missing top-level key(s): {', '.join(names)}; {PARTIAL_CONFIG_HINT}")
        errs = [e for e in errs if e not in top_missing]
    lines += [_describe(e, prefix) for e in errs[:5]]
    more = f"\n  ... and {len(errs) - 5} more" if len(errs) > 5 else ""
    raise StargateError(
        f"{source} does not match config/schema.yaml:\n  - "
        + "\n  - ".join(lines)
        + more
        + "\n  (every key is documented in config/schema.yaml and config/config.yaml)"
    )


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in first:
                raise DuplicateKeyError(key, first[key], line)
            first.setdefault(key, line)
        return super().construct_mapping(node, deep=deep)


class DuplicateKeyError(Exception):
    def __init__(self, key, first: int, second: int):
        super().__init__(key, first, second)
        self.key, self.first, self.second = key, first, second


def read_yaml(path: str | Path) -> Any:
    """A YAML file's content; a syntax error names the file, line and column (Snakemake's own loader, used
    for a config file, names neither), a key given twice in one mapping both lines."""
    path = Path(path)
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 (a safe loader)
    except DuplicateKeyError as exc:
        raise StargateError(
            f"{path}, lines {exc.first} and {exc.second}: the key '{exc.key}' is given twice in one mapping "
            "(YAML loaders keep the last one silently); remove one of them"
        ) from None
    except FileNotFoundError:
        raise StargateError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        what = " ".join(x for x in (getattr(exc, "context", None), getattr(exc, "problem", None)) if x)
        raise StargateError(f"{where}: not valid YAML: {what or exc}") from None


def load_config(config: dict[str, Any] | str | Path, source: str | None = None) -> dict[str, Any]:
    """Validate a config (a mapping or a YAML file) against the schema, fill its defaults, check it."""
    if not isinstance(config, dict):
        path = Path(config)
        source = source or str(path)
        config = read_yaml(path)
        if not isinstance(config, dict):
            raise StargateError(f"{path}: expected a mapping of config keys")
    fill_defaults(config, source or "config")
    check_config(config, source or "config")
    return config


def fill_defaults(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Validate `config` in place, writing the schema's defaults into it.

    The `api` mapping holds defaults for every openai role: they are merged under each such role's own
    options first, so a role's explicit option wins over `api`, and `api` wins over the schema default.
    """
    api = config.get("api") if isinstance(config.get("api"), dict) else {}
    for role in (config.get("roles") or {}).values():
        if isinstance(role, dict) and role.get("backend") == "openai" and isinstance(role.get("options", {}), dict):
            role["options"] = {**api, **(role.get("options") or {})}
    _raise_first(_Validator(schema()).iter_errors(config), source)
    return config


def numeric_problems(node: Any, path: str = "") -> list[str]:
    """NaN or an infinity anywhere, and a negative seed: a JSON schema lets them through (`minimum` is no
    bound for NaN), and they fail only when a job runs, after Snakemake deleted that job's previous outputs
    (`Invalid learning rate: nan` in train, numpy's seed error at the end of summarize)."""
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in numeric_problems(v, f"{path}.{k}" if path else str(k))]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in numeric_problems(v, f"{path}.{i}")]
    if isinstance(node, float) and not math.isfinite(node):
        return [f"{path}: {node} is not a finite number; give a finite value (NaN and infinities are refused)"]
    last = path.rsplit(".", 1)[-1]
    if (
        (last == "seed" or last.endswith("_seed"))
        and isinstance(node, int)
        and not isinstance(node, bool)
        and node < 0
    ):
        return [f"{path}: seeds must be >= 0 (numpy refuses negative seeds), got {node}"]
    return []


def check_config(config: dict[str, Any], source: str = "config", extra: list[str] | tuple[str, ...] = ()) -> None:
    """Every problem of a filled config, raised as one error listing them all. `extra`: problems found by code
    this module does not import (the training method's, stargate/workflow/), listed the same way."""
    problems = numeric_problems(config)
    models = config.get("models", {})
    if config.get("base_model") not in models:
        problems.append(f"base_model: '{config.get('base_model')}' is not a key of models ({', '.join(models)})")
    elif "api" in models[config["base_model"]]["source"]:
        problems.append("base_model: m0 must be a local model (it is scored with and fine-tuned), not an API model")
    for role, spec in config.get("roles", {}).items():
        if "model" in spec:
            if role in FIXED_MODEL_ROLES:
                problems.append(f"roles.{role}.model: this role is always played by m_t/m0; remove the key")
            elif spec["model"] not in models:
                problems.append(f"roles.{role}.model: '{spec['model']}' is not a key of models")
            elif spec["backend"] == "openai" and "api" not in models[spec["model"]]["source"]:
                problems.append(f"roles.{role}: backend openai needs a model with source.api")
            elif spec["backend"] != "openai" and "api" in models[spec["model"]]["source"]:
                problems.append(f"roles.{role}: model '{spec['model']}' is an API model; use backend openai")
        elif role not in FIXED_MODEL_ROLES:
            problems.append(f"roles.{role}.model: missing (name a key of models)")
        if role in ("questioner", "answerer", "scorer") and spec["backend"] == "openai":
            problems.append(f"roles.{role}.backend: m_t/m0 are local models; use hf or vllm")
    sim = config.get("simulation", {})
    if sim.get("min_turns", 1) > sim.get("max_turns", 1):
        problems.append(
            f"simulation.min_turns ({sim['min_turns']}) is larger than simulation.max_turns ({sim['max_turns']})"
        )
    if config.get("top_k", 1) > sim.get("conversations_per_pair", 1):
        problems.append("top_k: cannot keep more conversations per pair than simulation.conversations_per_pair")
    ev = config.get("evaluation", {})
    for i, q in enumerate(ev.get("questioners", [])):
        if q.get("model") not in models or "api" in models[q["model"]]["source"]:
            problems.append(
                f"evaluation.questioners[{i}].model: '{q.get('model')}' must name a local model of `models`"
                " (source hf or path)"
            )
    if SELECTION_CONDITION not in ev.get("conditions", []):
        problems.append("evaluation.conditions: must include qa-experimental (it selects the top-k conversations)")
    if (
        ev.get("winrate", {}).get("verdict") == "logprob"
        and config.get("roles", {}).get("judge", {}).get("backend") == "openai"
    ):
        problems.append(
            "evaluation.winrate.verdict: logprob needs a local judge (hf or vllm); use generate for API judges"
        )
    problems += check_data(config.get("data", {}))
    for name, m in models.items():
        src = m["source"]
        kinds = [k for k in ("gguf_package", "hf", "path", "api") if k in src]
        if len(kinds) != 1:
            problems.append(f"models.{name}.source: give exactly one of gguf_package, hf, path, api (got {kinds})")
        if "gguf_package" in src and "gguf_file" not in src:
            problems.append(f"models.{name}.source.gguf_file: required with gguf_package")
    problems += list(extra)
    if problems:
        raise StargateError(f"{source} has {len(problems)} problem(s):\n  - " + "\n  - ".join(problems))


def check_data(data: dict[str, Any]) -> list[str]:
    """Cross-checks of `data`: file sources name a file, row ranges are disjoint, the released gold
    responses can only be aligned with the released personas."""
    problems = []
    tasks, personas, oracle = data.get("tasks", {}), data.get("personas", {}), data.get("oracle", {})
    if tasks.get("source") == "file" and "path" not in tasks:
        problems.append("data.tasks.path: required when data.tasks.source is file")
    if tasks.get("source") == "hf_dataset" and not {"dataset", "rows"} <= tasks.keys():
        problems.append("data.tasks: hf_dataset needs dataset and rows")
    if tasks.get("source") == "file" and "rows" in tasks and "{split}" in tasks.get("path", ""):
        problems.append(
            "data.tasks: rows cut one task list into splits, but the path names one file per split "
            "({split}); remove rows or the {split}"
        )
    rows = tasks.get("rows") or {}
    for split, (lo, hi) in rows.items():
        if lo >= hi:
            problems.append(f"data.tasks.rows.{split}: [{lo}, {hi}] is empty; give [lo, hi] with lo < hi")
    spans = sorted((lo, hi, split) for split, (lo, hi) in rows.items())
    for (lo1, hi1, s1), (lo2, hi2, s2) in pairwise(spans):
        if lo2 < hi1:
            problems.append(
                f"data.tasks.rows: {s1} [{lo1}, {hi1}] and {s2} [{lo2}, {hi2}] overlap, so tasks would "
                "appear in two splits; make the ranges disjoint (paper: A [0,250], B [250,500], test [500,550])"
            )
    # keys the chosen source never reads: silently ignored, they would make the config lie
    ignored = {
        "tasks": (tasks, {"file": {"dataset", "dataset_split", "column"}, "hf_dataset": {"path"}}),
        "personas": (personas, {"file": {"seeds", "count", "seed"}, "generate": {"path"}}),
        "oracle": (oracle, {"generate": {"path"}}),
    }
    for kind, (spec, unused_by) in ignored.items():
        unused = sorted(unused_by.get(spec.get("source"), set()) & spec.keys())
        if unused:
            problems.append(
                f"data.{kind}: {', '.join(unused)} {'is' if len(unused) == 1 else 'are'} not read when "
                f"source is {spec['source']}; remove {'it' if len(unused) == 1 else 'them'} (or change the source)"
            )
    if personas.get("source") == "file" and "path" not in personas:
        problems.append("data.personas.path: required when data.personas.source is file")
    if personas.get("source") == "generate" and not {"seeds", "count"} <= personas.keys():
        problems.append("data.personas: generate needs seeds and count")
    if oracle.get("source") == "file":
        if "path" not in oracle:
            problems.append("data.oracle.path: required when data.oracle.source is file")
        elif "{split}" not in oracle["path"]:
            problems.append(
                "data.oracle.path: the authors' gold responses are one file per split; put {split} in "
                "the path (e.g. gold-responses/star-2-bsft/{split}.json)"
            )
        if personas.get("source") != "file":
            problems.append(
                "data.oracle.source file: the gold responses are keyed by position in the authors' "
                "persona lists ('prompt-i persona-j'), so data.personas must be source: file too"
            )
    return problems


def check_model_paths(config: dict[str, Any], prepared_dir: str | Path = "resources/models") -> None:
    """A `path` model source must be a model folder. Checked when the workflow loads because a bad path
    costs more than an error later: the changed source rewrites the model's recipe, and Snakemake then
    deletes the prepared folder before prepare_model fails (and reverting the typo replans every consumer).
    A path that is a file (a model's config.json, say) is always refused; a missing path or a folder without
    config.json only when the model is already prepared (else prepare_model says so when it runs)."""
    problems = []
    for name, model in config.get("models", {}).items():
        path = model.get("source", {}).get("path")
        if path is None:
            continue
        p, prepared = Path(path), (Path(prepared_dir) / name).exists()
        where = f"models.{name}.source.path: {path}"
        if p.is_file():
            problems.append(
                f"{where} is a file, not a model folder; give the folder that holds config.json ({p.parent})"
            )
        elif prepared and not p.exists():
            problems.append(f"{where} does not exist (resources/models/{name} was prepared from another path)")
        elif prepared and not (p / "config.json").is_file():
            problems.append(f"{where} is not a Hugging Face model folder (it has no config.json)")
    if problems:
        raise StargateError(
            "model sources named in the config are wrong:\n  - "
            + "\n  - ".join(problems)
            + "\n  (nothing was changed: the prepared model folder is kept; fix the path and run again)"
        )


def check_data_files(config: dict[str, Any], resolve) -> None:
    """Every data file the config names exists (a typo fails here, naming the key, even when results
    exist). `resolve(kind, split)` gives the path a stage would read (rules/common.smk resolves
    data.released_dir and relative paths)."""
    problems = []
    data = config["data"]
    for kind in ("tasks", "personas", "names", "oracle"):
        spec = data.get(kind)
        if not (isinstance(spec, dict) and spec.get("source") == "file"):
            continue
        for split in SPLITS:
            path = resolve(kind, split)
            if not Path(path).is_file():
                problems.append(f"data.{kind}.path: {path} (split {split}) is not a file")
                break
    personas = data["personas"]
    if personas.get("source") == "generate" and not Path(resolve("seeds", None)).is_file():
        problems.append(f"data.personas.seeds: {resolve('seeds', None)} is not a file")
    if problems:
        raise StargateError(
            "data files named in the config are missing:\n  - "
            + "\n  - ".join(problems)
            + "\n  (a relative path is looked up in the working directory, then in the repository; "
            "fix the path or create the file)"
        )
