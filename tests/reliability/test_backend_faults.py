"""Backend faults from outside end in a clean error naming the cause (or a retried success)."""

from __future__ import annotations

import socket
import time

import pytest
import servers

from stargate.api.cache import ApiCache
from stargate.api.requests import ApiCallError
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


# ------------------------------------------------------------------------------- malformed replies
def fake_texts(prompts: list[list[dict]]) -> list[list[str]]:
    bodies = [servers.fake_completion({"messages": p, "n": 1, "seed": 0}) for p in prompts]
    return [[c["message"]["content"] for c in b["choices"]] for b in bodies]


def prompts(k: int) -> list[list[dict]]:
    return [[{"role": "user", "content": f"question {i}?"}] for i in range(k)]


def test_malformed_replies_are_retried_and_the_answer_is_cached(tmp_path):
    """An HTTP 200 whose body is truncated JSON, or JSON that is not a chat completion, is retried like a
    5xx (it escaped as a bare JSONDecodeError, abandoning the calls in flight); the answer is cached."""
    faults = ["truncated", None, "not_completion", "truncated", None]
    with servers.OpenAITestServer(faults=faults) as server:
        opts = dict(base_url=server.base_url, cache_dir=str(tmp_path), max_concurrency=2, stage="simulate", **FAST)
        b = OpenAIBackend("fake-model", **opts)
        out = b.generate(prompts(4), Sampling(seed=0))
        assert out == fake_texts(prompts(4))
        assert b.stats.extra["retries"] == 3 and b.stats.extra["api_calls"] == 4
        assert len(ApiCache(tmp_path)) == 4
        assert server.stats.faults["truncated"] == 2 and server.stats.faults["not_completion"] == 1
        asked = server.stats.chat_requests
        assert OpenAIBackend("fake-model", **opts).generate(prompts(4), Sampling(seed=0)) == out
        assert server.stats.chat_requests == asked  # all from the cache


@pytest.mark.parametrize("fault", ["truncated", "not_completion"])
def test_always_malformed_replies_end_in_an_error_naming_stage_url_and_key(tmp_path, fault):
    with servers.OpenAITestServer(fail_always=fault) as server:
        url = server.base_url
        b = OpenAIBackend("fake-model", base_url=url, cache_dir=str(tmp_path), max_retries=2, stage="simulate", **FAST)
        (call,) = b.plan(prompts(1), Sampling(seed=0))
        with pytest.raises(ApiCallError) as err:  # a StargateError: the CLI prints it as one line
            b.generate(prompts(1), Sampling(seed=0))
    msg = str(err.value)
    assert msg.startswith("simulate: 1 API call(s) failed"), msg
    assert url in msg and f"cache key {call.key}" in msg, msg
    assert "malformed reply" in msg and "failed after 3 attempts" in msg, msg
    assert server.stats.chat_requests == 3 and len(ApiCache(tmp_path)) == 0


def test_a_malformed_batch_output_line_is_a_clean_error(tmp_path):
    """A batch output file with a line that is not JSON: the other answers are stored, the unreadable one
    is named (batch, URL, key) instead of a bare JSONDecodeError; a rerun submits it again and succeeds."""
    with servers.OpenAITestServer(batch_malformed=1) as server:
        opts = dict(
            base_url=server.base_url, cache_dir=str(tmp_path), batch=True, batch_poll_s=0.05, stage="simulate", **FAST
        )
        b = OpenAIBackend("fake-model", **opts)
        calls = b.plan(prompts(3), Sampling(seed=0))
        with pytest.raises(ApiCallError) as err:
            b.generate(prompts(3), Sampling(seed=0))
        msg = str(err.value)
        assert msg.startswith("simulate: 1 API call(s) failed"), msg
        assert "malformed" in msg and "not JSON" in msg and server.base_url in msg, msg
        assert sum(f"cache key {c.key}" in msg for c in calls) == 1, msg
        assert len(ApiCache(tmp_path)) == 2
        server.batch_malformed = 0
        assert OpenAIBackend("fake-model", **opts).generate(prompts(3), Sampling(seed=0)) == fake_texts(prompts(3))
        assert server.stats.batches_created == 2 and server.stats.reached == 4
