"""Backend faults from outside end in a clean error naming the cause (or a retried success)."""

from __future__ import annotations

import socket
import time

import pytest

from stargate.backends.base import Sampling
from stargate.backends.openai_backend import OpenAIBackend, is_local_server
from stargate.errors import StargateError

FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.02}


def chat() -> list[list[dict]]:
    return [[{"role": "user", "content": "hi"}]]


def test_no_placeholder_key_for_a_public_base_url(tmp_path, monkeypatch):
    """A missing key fails at once, naming the variable and the URL; it is not sent as 'EMPTY' to a
    public API (a minute of retries and 'connection error' before)."""
    monkeypatch.delenv("MY_KEY", raising=False)
    b = OpenAIBackend("gpt-4o", base_url="https://api.example.com/v1", api_key_env="MY_KEY", cache_dir=str(tmp_path))
    t0 = time.monotonic()
    with pytest.raises(StargateError) as err:
        b.generate(chat(), Sampling())
    assert time.monotonic() - t0 < 5
    assert "set the environment variable MY_KEY" in str(err.value) and "https://api.example.com/v1" in str(err.value)


@pytest.mark.parametrize(
    "url,local",
    [
        ("http://localhost:8000/v1", True),
        ("http://127.0.0.1:8000/v1", True),
        ("http://[::1]:8000/v1", True),
        ("http://gpu-node-12:8000/v1", True),  # a vLLM server on a cluster node
        ("http://10.1.2.3:8000/v1", True),
        ("https://api.openai.com/v1", False),
        ("https://api.together.xyz/v1", False),
        ("http://8.8.8.8/v1", False),
    ],
)
def test_which_servers_get_a_placeholder_key(url, local):
    assert is_local_server(url) is local


def test_a_server_that_is_down_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    b = OpenAIBackend("m", base_url=url, cache_dir=str(tmp_path), max_retries=1, timeout_s=5, **FAST)
    with pytest.raises(StargateError) as err:
        b.generate(chat(), Sampling())
    assert f"connection error to {url}" in str(err.value), err.value
