"""What determines a prepared model folder's content, as a small file its consumers take as an input.

The folder resources/models/NAME is an input of its consumers through `ancient()`, so rebuilding it
identically (a forced prepare_model, a re-copied or touched folder) reruns nothing. This file,
resources/model_recipes/NAME.json, is an ordinary input of prepare_model and of every consumer: its rule
reruns only when `models.NAME.source` or the prepare_model code changes, and then so does everything
that loads the model (see rules/models.smk).
"""

from __future__ import annotations

import argparse

from ..records import write_json
from .common import parse_json_arg


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", required=True, help="the model's `source` config as JSON")
    p.add_argument("--prepare-code", required=True, help="code fingerprint of the prepare_model stage")
    p.add_argument("--output", required=True)


def run(args: argparse.Namespace) -> None:
    source = parse_json_arg(args.source, "--source")
    write_json(args.output, {"source": source, "prepare_model_code": args.prepare_code})
