"""The API response cache and the ledger: keys, atomic entries, kill safety, concurrent appends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stargate.api.accounting import Accounting, Ledger
from stargate.api.cache import ApiCache, normalize_sampling, request_key, resolve_cache_dir
from stargate.api.requests import ApiCall
from stargate.api.responses import Responses

REPO = Path(__file__).resolve().parents[1]
MSGS = [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Plan a trip."}]


def key(model="gpt-4", messages=MSGS, n=1, temperature=0.0, top_p=0.9, max_tokens=300, seed=1, extra=None):
    return request_key(model, messages, normalize_sampling(n, temperature, top_p, max_tokens, seed), extra)


def test_key_is_stable_across_versions():
    # A changed key would silently re-pay every cached call: this value must never change.
    assert key() == "3a7531f4a7d1e42a9eb0191bfe0fdaef2c9573f6fb344ce374f28a2dbec072ed"


def test_key_depends_on_everything_that_changes_the_answer():
    base = key()
    variants = [
        key(model="gpt-4o"),
        key(messages=MSGS[:1]),
        key(messages=[MSGS[0], {"role": "user", "content": "Plan a trip!"}]),
        key(n=2),
        key(temperature=0.5),
        key(top_p=1.0),
        key(max_tokens=301),
        key(seed=2),
        key(seed=None),
        key(extra={"max_tokens_param": "max_completion_tokens"}),
    ]
    assert base not in variants
    assert len(set(variants)) == len(variants)


def test_key_ignores_representation_details():
    assert key(temperature=0) == key(temperature=0.0)
    assert key(top_p=1) == key(top_p=1.0)
    reordered = [{"content": m["content"], "role": m["role"]} for m in MSGS]
    assert key(messages=reordered) == key()
    assert key(extra={}) == key()


def test_put_get_roundtrip_leaves_no_temp_files(tmp_path):
    cache = ApiCache(tmp_path)
    k = key()
    assert cache.get(k) is None and k not in cache
    cache.put(k, {"response": {"choices": [{"text": "hi", "finish_reason": "stop"}]}})
    assert k in cache
    assert cache.get(k)["response"]["choices"][0]["text"] == "hi"
    assert cache.keys() == [k]
    assert [p.name for p in cache.path(k).parent.iterdir()] == [f"{k}.json"]
    with pytest.raises(ValueError):
        cache.put(k, {"no": "response"})
    with pytest.raises(ValueError):
        cache.path("../../etc/passwd")


def test_unreadable_entry_is_moved_aside(tmp_path):
    cache = ApiCache(tmp_path)
    k = key()
    p = cache.path(k)
    p.parent.mkdir(parents=True)
    p.write_text('{"response": {"choi')  # what a non-atomic writer would leave behind
    assert cache.get(k) is None
    assert not p.exists()
    assert len(list(p.parent.glob("*.corrupt-*"))) == 1


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("STARGATE_API_CACHE", raising=False)
    assert resolve_cache_dir(None) == Path("resources/api-cache")
    monkeypatch.setenv("STARGATE_API_CACHE", str(tmp_path / "env"))
    assert resolve_cache_dir(None) == tmp_path / "env"
    assert resolve_cache_dir(tmp_path / "opt") == tmp_path / "opt"


WRITER = """
import sys
sys.path.insert(0, {repo!r})
from stargate.api.cache import ApiCache
cache = ApiCache({root!r})
big = "x" * 2_000_000
i = 0
while True:
    k = format(i, "064x")
    cache.put(k, {{"response": {{"choices": [{{"text": big + str(i)}}]}}}})
    i += 1
"""


def test_kill_during_writes_never_leaves_a_corrupt_entry(tmp_path):
    """SIGKILL a process that writes 2 MB entries in a loop, at random moments: every entry stays readable."""
    root = tmp_path / "cache"
    script = WRITER.format(repo=str(REPO), root=str(root))
    for delay in (0.3, 0.45, 0.6, 0.75, 0.9):
        proc = subprocess.Popen([sys.executable, "-c", script])
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    cache = ApiCache(root)
    keys = cache.keys()
    assert keys, "the writer wrote nothing before it was killed"
    for k in keys:
        entry = json.loads(cache.path(k).read_text())  # raises if half-written
        assert entry["response"]["choices"][0]["text"].endswith(str(int(k, 16)))
    # interrupted temp files may remain; they are never read as entries
    assert all(p.name.startswith(".") for p in root.rglob("*.tmp"))


# ---------------------------------------------------------------------------------------- ledger
def test_ledger_spent_is_incremental_and_per_stage(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    assert ledger.spent() == 0.0
    ledger.append({"stage": "oracle", "kind": "paid", "cost_usd": 0.5})
    ledger.append({"stage": "judge", "kind": "paid", "cost_usd": 0.25})
    assert ledger.spent() == pytest.approx(0.75)
    other = Ledger(tmp_path / "ledger.jsonl")  # another process appends
    other.append({"stage": "oracle", "kind": "cached", "calls": 10, "cost_usd": 0.0})
    other.append({"stage": "oracle", "kind": "paid", "cost_usd": 1.0})
    assert ledger.spent() == pytest.approx(1.75)
    assert ledger.spent("oracle") == pytest.approx(1.5)
    assert ledger.spent("judge") == pytest.approx(0.25)
    s = ledger.summary()
    assert s["oracle"]["paid_calls"] == 2 and s["oracle"]["cached_calls"] == 10


def test_ledger_survives_a_half_written_line(tmp_path):
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger(path)
    ledger.append({"stage": "a", "cost_usd": 1.0})
    with path.open("ab") as fh:
        fh.write(b'{"stage": "a", "cost_u')  # a writer killed mid-line
    ledger.append({"stage": "a", "cost_usd": 2.0})
    assert [r["cost_usd"] for r in ledger.records()] == [1.0, 2.0]
    assert Ledger(path).spent() == pytest.approx(3.0)


APPENDER = """
import sys
sys.path.insert(0, {repo!r})
from stargate.api.accounting import Ledger
ledger = Ledger({path!r})
for i in range(200):
    ledger.append({{"stage": "p{{}}".format(sys.argv[1]), "cost_usd": 0.001, "pad": "y" * 3000}})
"""


def test_concurrent_appends_from_processes(tmp_path):
    path = tmp_path / "ledger.jsonl"
    script = APPENDER.format(repo=str(REPO), path=str(path))
    procs = [subprocess.Popen([sys.executable, "-c", script, str(i)]) for i in range(4)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    lines = path.read_bytes().splitlines()
    assert len(lines) == 800
    assert all(json.loads(x)["cost_usd"] == 0.001 for x in lines)
    assert Ledger(path).spent() == pytest.approx(0.8)


def test_only_the_answer_is_persisted_not_what_else_the_server_sent(tmp_path):
    """A response carrying a secret (a proxy echoing the Authorization header, fields of no use) is stored
    with the answer's fields only: the secret reaches neither the cache entry nor the ledger."""
    secret = "sk-test-SECRET-0123456789"
    body = {
        "id": "chatcmpl-1",
        "model": "gpt-4",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "Lisbon in May.", "debug": secret},
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 4, "echo": {"Authorization": f"Bearer {secret}"}},
        "request_headers": {"Authorization": f"Bearer {secret}"},
    }
    call = ApiCall(0, 0, key(), MSGS, normalize_sampling(1, 0.0, 0.9, 300, 1), 20)
    ledger = Ledger(tmp_path / "ledger.jsonl")
    entry = Responses(ApiCache(tmp_path), Accounting(ledger, "gpt-4", "test", (0.03, 0.06))).store(call, body, "paid")
    assert secret in json.dumps(body)
    stored = ApiCache(tmp_path).path(key()).read_text()
    assert "Lisbon in May." in stored and json.loads(stored)["response"] == entry["response"]
    assert secret not in stored and secret not in ledger.path.read_text()
    assert sorted(os.listdir(tmp_path)) == ["ledger.jsonl", "v1"]
