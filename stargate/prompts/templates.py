"""The template files of the prompt sets: where a set's texts live, which of them each stage reads, and
their digests (Snakemake rules record them, so an edited template reruns its users and nothing else).

A set is a folder of this package with a `manifest.yaml` and template files (`<key>.txt`); a set may take
the texts it does not ship from another set (manifest key `texts_from`: fixed_v1 uses paper_v1's).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from ..errors import StargateError

PROMPTS_DIR = Path(__file__).resolve().parent
TEXT_NAMES = (
    "persona_system",
    "persona_user",
    "oracle_system",
    "oracle_user",
    "questioner",
    "roleplayer_system",
    "roleplayer",
    "regularizer",
    "judge_system",
    "judge_user",
    "name_extraction",
)

# Texts of the analyses outside the loop (the query-specificity rating, prompts file §11): read when a stage
# asks for them, and not part of `provenance`'s prompt_files_sha256 (which covers TEXT_NAMES).
ANALYSIS_TEXTS = ("specificity_system", "specificity_user")


def available_sets() -> list[str]:
    return sorted(p.parent.name for p in PROMPTS_DIR.glob("*/manifest.yaml"))


def _missing_file(name: str, path: Path) -> StargateError:
    """A file of a prompt set that is not there (deleted, or a checkout without it): the set, the file, the fix."""
    try:
        rel = f"stargate/prompts/{path.resolve().relative_to(PROMPTS_DIR.resolve()).as_posix()}"
    except ValueError:  # a set outside the package (tests)
        rel = str(path)
    return StargateError(
        f"prompt set '{name}': the template file {rel} is missing ({path}). Fix: restore it, e.g. "
        f"`git checkout {rel}` in the checkout, or choose another set with the config key 'prompts' "
        f"(available: {', '.join(available_sets())})"
    )


def _manifest(name: str) -> dict:
    f = PROMPTS_DIR / name / "manifest.yaml"
    if not f.is_file():
        raise _missing_file(name, f)
    return yaml.safe_load(f.read_text(encoding="utf-8")) or {}


def template_file(name: str, manifest: dict, key: str) -> Path:
    """The file holding template `key` of set `name`: its own folder's, else that of `texts_from`."""
    own = PROMPTS_DIR / name / f"{key}.txt"
    if own.is_file():
        return own
    shared = PROMPTS_DIR / manifest.get("texts_from", name) / f"{key}.txt"
    if shared.is_file():
        return shared
    raise _missing_file(name, shared)


# The templates each stage renders (besides the manifest, which every stage reads). The paper's raw
# strings embed the questioner template in every conversation, hence its users below.
STAGE_TEXTS: dict[str, tuple[str, ...]] = {
    "personas": ("persona_system", "persona_user"),
    "names": ("name_extraction",),
    "oracle": ("oracle_system", "oracle_user"),
    "questioner_turn": ("questioner",),
    "roleplayer_turn": ("roleplayer_system", "roleplayer", "questioner"),
    "score": ("questioner",),
    "regularize": ("regularizer",),
    "sft_data": (),
    "winrate_answer": (),
    "judge": ("judge_system", "judge_user"),
    "specificity": ANALYSIS_TEXTS,
}


def template_files(name: str, keys: tuple[str, ...] = TEXT_NAMES) -> list[str]:
    """Files a prompt set reads for `keys`: Snakemake rules list them as inputs so edits rerun their users."""
    folder = PROMPTS_DIR / name
    manifest = _manifest(name)
    files = [folder / "manifest.yaml"]
    files += [template_file(name, manifest, key) for key in keys]
    if manifest.get("chat_template"):
        f = folder / manifest["chat_template"]
        if not f.is_file():
            raise _missing_file(name, f)
        files.append(f)
    return [str(f.resolve()) for f in files]


def stage_template_files(name: str, stage: str) -> list[str]:
    return template_files(name, STAGE_TEXTS[stage])


def stage_template_digest(name: str, stage: str) -> str:
    """sha256 over the names (relative to the prompts folder) and contents of the templates `stage` reads.

    Rules record it as a param: an edited template reruns its users, while a moved or re-cloned checkout
    (other absolute paths, new mtimes) leaves the results up to date.
    """
    h = hashlib.sha256()
    for f in sorted(stage_template_files(name, stage)):
        path = Path(f)
        h.update(str(path.relative_to(PROMPTS_DIR.resolve())).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()
