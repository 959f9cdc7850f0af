"""Run one OpenAIBackend.generate in its own process (so a test can SIGKILL it mid-way).

usage: python tests/servers/run_client.py SPEC.json
SPEC: {"model": ..., "options": {...}, "prompts": [...], "sampling": {...}, "out": "outputs.json"}
Exit 0 with the outputs written, 2 on a StargateError (message on stderr).
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from stargate.backends.base import Sampling  # noqa: E402
from stargate.backends.openai_backend import OpenAIBackend  # noqa: E402
from stargate.errors import StargateError  # noqa: E402


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    backend = OpenAIBackend(spec["model"], **spec.get("options", {}))
    try:
        outputs = backend.generate(spec["prompts"], Sampling(**spec.get("sampling", {})))
    except StargateError as exc:
        print(f"StargateError: {exc}", file=sys.stderr)
        return 2
    Path(spec["out"]).write_text(json.dumps({"outputs": outputs, "stats": backend.stats.extra}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
