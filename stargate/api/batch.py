"""The Batch API runner: the calls missing from the cache, submitted, polled and collected; resumable.

Each submitted job keeps two files beside the cache, in `<cache dir>/batches/`:

    <job>.input.jsonl   the request lines, custom_id = cache key (written before the upload)
    <job>.json          state: input_file_id, batch_id, status, request counts (rewritten atomically
                        after every step, so the batch id is on disk as soon as the API returns it)

`<job>` is a hash of the job's cache keys. A rerun first resumes every open job that holds a key it needs
(poll, collect) instead of submitting again; if a run was killed between `batches.create` and saving the
id, the batch is found again by its `metadata.stargate_job`. Collected results go through the same path
as online calls (`responses.py`: ledger line at the Batch API's discounted price, then cache entry).
Results of a resumed job are cached even if the current stage no longer needs them: they were paid for.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path

import openai

from ..errors import StargateError
from ..log import get_logger
from ..records import atomic_write_bytes
from .cache import atomic_write_json
from .requests import ApiCall, call_from_batch_line, content_filter_code, validate_body
from .responses import Responses
from .settings import RunOutcome, RunSettings

log = get_logger(__name__)

TERMINAL = {"completed", "failed", "expired", "cancelled"}
MAX_REQUESTS_PER_BATCH = 50_000


def job_id(keys: list[str]) -> str:
    return "job-" + hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:24]


def open_jobs(folder: Path) -> list[dict]:
    """States of jobs that are not collected yet."""
    out = []
    for p in sorted(folder.glob("job-*.json")):
        try:
            state = json.loads(p.read_text(encoding="utf-8"))
        except ValueError:
            log.warning("unreadable batch state %s; ignored", p)
            continue
        if state.get("status") not in ("collected", "abandoned"):
            out.append(state)
    return out


async def run_batch(calls: list[ApiCall], settings: RunSettings, client, responses: Responses) -> RunOutcome:
    """Answer `calls` (distinct keys, none cached) through the Batch API of `client`."""
    return await _BatchRun(settings, client, responses).run(calls)


class _BatchRun:
    def __init__(self, settings: RunSettings, client, responses: Responses):
        self.settings, self.client, self.responses = settings, client, responses
        self.stage = settings.stage
        self.folder = responses.cache.root / "batches"

    async def run(self, calls: list[ApiCall]) -> RunOutcome:
        self.folder.mkdir(parents=True, exist_ok=True)
        acc = self.responses.accounting
        outcome = RunOutcome()
        need = {c.key: c for c in calls}
        for state in open_jobs(self.folder):
            if need.keys() & set(state.get("keys", [])):
                log.info(
                    "%s: resuming batch job %s (batch %s, status %s)",
                    self.stage,
                    state["job"],
                    state.get("batch_id"),
                    state.get("status"),
                )
                lost = await self._finish(state, need)
                if lost:  # e.g. an expired batch: what it did not answer is submitted again below
                    log.warning(
                        "%s: %d request(s) of resumed job %s got no result; resubmitting them",
                        self.stage,
                        len(lost),
                        state["job"],
                    )
        remaining = [c for c in calls if self.responses.cache.get(c.key) is None]
        fit, reserved = [], 0.0
        for i, c in enumerate(remaining):
            est = acc.reserve(c, batch=True)
            if est is None:
                outcome.skipped, outcome.budget_stopped = remaining[i:], True
                break
            reserved += est
            fit.append(c)
        try:
            for start in range(0, len(fit), MAX_REQUESTS_PER_BATCH):
                state = await self._submit(fit[start : start + MAX_REQUESTS_PER_BATCH])
                outcome.failures += await self._finish(state, need)
        finally:
            acc.release(reserved)
        return outcome

    def _save(self, state: dict) -> None:
        state["updated_at"] = time.time()
        atomic_write_json(self.folder / f"{state['job']}.json", state)

    async def _submit(self, calls: list[ApiCall]) -> dict:
        keys = [c.key for c in calls]
        job = job_id(keys)
        path = self.folder / f"{job}.json"
        state = json.loads(path.read_text()) if path.exists() else None
        if state is None or state.get("status") in ("collected", "abandoned"):
            url = self.settings.batch_endpoint
            lines = [
                json.dumps(
                    {"custom_id": c.key, "method": "POST", "url": url, "body": self.settings.body(c)},
                    ensure_ascii=False,
                )
                for c in calls
            ]
            input_path = self.folder / f"{job}.input.jsonl"
            atomic_write_bytes(input_path, ("\n".join(lines) + "\n").encode("utf-8"))
            state = {
                "job": job,
                "stage": self.stage,
                "model": self.settings.model,
                "endpoint": url,
                "n_requests": len(calls),
                "keys": keys,
                "input_file": input_path.name,
                "input_file_id": None,
                "batch_id": None,
                "status": "prepared",
                "created_at": time.time(),
            }
            self._save(state)
        if not state.get("input_file_id"):
            data = (self.folder / state["input_file"]).read_bytes()
            f = await self.client.files.create(file=(state["input_file"], data, "application/jsonl"), purpose="batch")
            state["input_file_id"] = f.id
            self._save(state)
        if not state.get("batch_id"):
            found = await self._find_batch(job, state["input_file_id"])
            if found is None:
                b = await self.client.batches.create(
                    input_file_id=state["input_file_id"],
                    endpoint=state["endpoint"],
                    completion_window="24h",
                    metadata={"stargate_job": job},
                )
                log.info("%s: submitted batch %s (%d requests, job %s)", self.stage, b.id, len(calls), job)
            else:
                b = found
                log.info("%s: found batch %s already created for job %s", self.stage, b.id, job)
            state["batch_id"], state["status"] = b.id, b.status
            self._save(state)
        return state

    async def _find_batch(self, job: str, input_file_id: str):
        """A batch created for this job by a run that was killed before it could save the id."""
        seen = 0
        try:
            async for b in self.client.batches.list(limit=100):
                if (b.metadata or {}).get("stargate_job") == job or b.input_file_id == input_file_id:
                    return b
                seen += 1
                if seen >= 1000:
                    break
        except Exception as exc:  # listing is a best effort: creating a new batch is the fallback
            log.warning("could not list batches to look for job %s (%s)", job, exc)
        return None

    def _requests(self, state: dict) -> dict[str, dict]:
        lines = (self.folder / state["input_file"]).read_text(encoding="utf-8").splitlines()
        return {rec["custom_id"]: rec for rec in map(json.loads, lines)}

    async def _finish(self, state: dict, need: dict[str, ApiCall]) -> list[tuple[ApiCall, str]]:
        """Poll a submitted job to its end and collect it. Returns failures among the calls in `need`."""
        if not state.get("batch_id"):  # killed before its batch existed: submit it from its input file
            calls = [call_from_batch_line(rec) for rec in self._requests(state).values()]
            state = await self._submit(calls)
        s = self.settings
        deadline = time.monotonic() + s.batch_max_wait_s
        errors_in_a_row = 0
        while True:
            try:
                b = await self.client.batches.retrieve(state["batch_id"])
                errors_in_a_row = 0
            except (openai.APIConnectionError, openai.APIStatusError) as exc:
                errors_in_a_row += 1
                if errors_in_a_row > max(3, s.max_retries):
                    raise StargateError(
                        f"{self.stage}: cannot poll batch {state['batch_id']} at {self.client.base_url} ({exc}); it keeps running "
                        f"on the server: rerun to resume it (state in {self.folder / state['job']}.json)"
                    ) from None
                await asyncio.sleep(s.backoff_delay(errors_in_a_row))
                continue
            counts = b.request_counts.model_dump() if getattr(b, "request_counts", None) else {}
            if b.status != state.get("status") or counts != state.get("request_counts"):
                state["status"], state["request_counts"] = b.status, counts
                self._save(state)
                log.info("%s: batch %s %s %s", self.stage, b.id, b.status, counts)
            if b.status in TERMINAL:
                break
            if time.monotonic() > deadline:
                raise StargateError(
                    f"{self.stage}: batch {b.id} still '{b.status}' after batch_max_wait_s="
                    f"{s.batch_max_wait_s:g}; it keeps running: rerun to resume and collect it"
                )
            await asyncio.sleep(s.batch_poll_s)
        return await self._collect(state, b, need)

    async def _collect(self, state: dict, b, need: dict[str, ApiCall]) -> list[tuple[ApiCall, str]]:
        requests = self._requests(state)
        cache = self.responses.cache
        problems: dict[str, str] = {}
        malformed: list[str] = []  # output lines that are not a result record: their requests have no result
        stored = 0
        for file_id in (b.output_file_id, b.error_file_id):
            if not file_id:
                continue
            content = await self.client.files.content(file_id)
            for lineno, line in enumerate(content.text.splitlines(), 1):
                if not line.strip():
                    continue
                rec = _result_record(line)
                if isinstance(rec, str):
                    malformed.append(f"line {lineno} of file {file_id} ({rec})")
                    continue
                key = rec.get("custom_id")
                if key not in requests or cache.get(key) is not None:
                    continue
                call = need.get(key) or call_from_batch_line(requests[key])
                resp = rec.get("response") or {}
                body = resp.get("body") or {}
                status = resp.get("status_code")
                if rec.get("error") or status != 200:
                    err = rec.get("error") or (body.get("error") if isinstance(body, dict) else None) or {}
                    err = err if isinstance(err, dict) else {"message": str(err)}
                    code = content_filter_code(err)
                    if status == 400 and code:
                        self.responses.store_refusal(call, "batch", 400, code, str(err.get("message", "")))
                        stored += 1
                    else:
                        problems[key] = f"batch error {status}: {err.get('code', '')} {err.get('message', '')}".strip()
                    continue
                problem = validate_body(body, call.sampling["n"])
                if problem:
                    problems[key] = problem
                    continue
                self.responses.store(call, body, kind="batch")
                stored += 1
        lost = ""
        if malformed:
            log.warning(
                "%s: batch %s at %s: %d output line(s) are not a result record, e.g. %s",
                self.stage,
                b.id,
                self.client.base_url,
                len(malformed),
                malformed[0],
            )
            lost = (
                f"; {len(malformed)} line(s) of its output are malformed, e.g. {malformed[0]}: their answers "
                f"cannot be read; a rerun submits the requests without a result again"
            )
        for k in requests:
            if k not in problems and cache.get(k) is None:
                problems[k] = f"no result in batch {b.id} at {self.client.base_url} (status {b.status}){lost}"
        if b.status == "failed" and getattr(b, "errors", None):
            log.error("%s: batch %s failed: %s", self.stage, b.id, b.errors)
        state["status"] = "collected"
        state["collected"] = {"stored": stored, "problems": len(problems), "batch_status": b.status}
        self._save(state)
        log.info(
            "%s: batch %s collected: %d results stored, %d without a result", self.stage, b.id, stored, len(problems)
        )
        return [(need[k], f"{need[k].where()}: {msg}") for k, msg in problems.items() if k in need]


def _result_record(line: str) -> dict | str:
    """One line of a batch output or error file as a result record, or why it is not one (a truncated or
    mangled file: the line is skipped and its request counts as unanswered)."""
    try:
        rec = json.loads(line)
    except ValueError as exc:
        return f"not JSON: {exc}"
    if not isinstance(rec, dict):
        return f"a JSON {type(rec).__name__}, not an object"
    if not isinstance(rec.get("response"), dict | None):
        return "its 'response' is not an object"
    return rec
