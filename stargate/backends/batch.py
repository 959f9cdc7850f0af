"""OpenAI Batch API for the calls missing from the cache: submit, poll, collect; resumable after a kill.

Each submitted job keeps two files beside the cache, in `<cache dir>/batches/`:

    <job>.input.jsonl   the request lines, custom_id = cache key (written before the upload)
    <job>.json          state: input_file_id, batch_id, status, request counts (rewritten atomically
                        after every step, so the batch id is on disk as soon as the API returns it)

`<job>` is a hash of the job's cache keys. A rerun first resumes every open job that holds a key it needs
(poll, collect) instead of submitting again; if a run was killed between `batches.create` and saving the
id, the batch is found again by its `metadata.stargate_job`. Collected results go through the same path
as online calls: ledger line (at the Batch API's discounted price), then cache entry. Results of a
resumed job are cached even if the current stage no longer needs them: they were paid for.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import StargateError
from ..log import get_logger
from ..records import atomic_write_bytes
from .cache import atomic_write_json

if TYPE_CHECKING:
    from .openai_backend import ApiCall, OpenAIBackend

log = get_logger(__name__)

TERMINAL = {"completed", "failed", "expired", "cancelled"}
MAX_REQUESTS_PER_BATCH = 50_000


def state_dir(backend: OpenAIBackend) -> Path:
    return backend.cache.root / "batches"


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


async def run_batch(backend: OpenAIBackend, missing: list[ApiCall], entries: dict) -> tuple[list, list]:
    """Answer `missing` through the Batch API, filling `entries`. Returns (failures, skipped-by-budget)."""
    folder = state_dir(backend)
    folder.mkdir(parents=True, exist_ok=True)
    client = backend.make_client()
    failures: list[tuple[ApiCall, str]] = []
    skipped: list[ApiCall] = []
    reserved = 0.0
    try:
        need = {c.key: c for c in missing}
        for state in open_jobs(folder):
            if need.keys() & set(state.get("keys", [])):
                log.info(
                    "%s: resuming batch job %s (batch %s, status %s)",
                    backend.stage,
                    state["job"],
                    state.get("batch_id"),
                    state.get("status"),
                )
                lost = await _finish(backend, client, folder, state, need, entries)
                if lost:  # e.g. an expired batch: what it did not answer is submitted again below
                    log.warning(
                        "%s: %d request(s) of resumed job %s got no result; resubmitting them",
                        backend.stage,
                        len(lost),
                        state["job"],
                    )
        remaining = [c for c in missing if c.key not in entries]
        fit = []
        for i, c in enumerate(remaining):
            est = backend.estimate_cost(c, batch=True)
            if not backend.budget.try_reserve(est):
                skipped = remaining[i:]
                backend.stats.extra["skipped_budget"] += len(skipped)
                break
            reserved += est
            fit.append(c)
        for start in range(0, len(fit), MAX_REQUESTS_PER_BATCH):
            chunk = fit[start : start + MAX_REQUESTS_PER_BATCH]
            state = await _submit(backend, client, folder, chunk)
            failures += await _finish(backend, client, folder, state, need, entries)
    finally:
        backend.budget.release(reserved)
        await client.close()
    return failures, skipped


def _endpoint(backend: OpenAIBackend) -> str:
    return backend.options["batch_endpoint"] or (
        "/chat/completions" if backend.azure_endpoint else "/v1/chat/completions"
    )


def _save(folder: Path, state: dict) -> None:
    state["updated_at"] = time.time()
    atomic_write_json(folder / f"{state['job']}.json", state)


async def _submit(backend: OpenAIBackend, client, folder: Path, calls: list[ApiCall]) -> dict:
    keys = [c.key for c in calls]
    job = job_id(keys)
    path = folder / f"{job}.json"
    state = json.loads(path.read_text()) if path.exists() else None
    if state is None or state.get("status") in ("collected", "abandoned"):
        url = _endpoint(backend)
        lines = [
            json.dumps(
                {
                    "custom_id": c.key,
                    "method": "POST",
                    "url": url,
                    "body": c.body(
                        backend.model, backend.options["max_tokens_param"], bool(backend.options["send_seed"])
                    ),
                },
                ensure_ascii=False,
            )
            for c in calls
        ]
        input_path = folder / f"{job}.input.jsonl"
        atomic_write_bytes(input_path, ("\n".join(lines) + "\n").encode("utf-8"))
        state = {
            "job": job,
            "stage": backend.stage,
            "model": backend.model,
            "endpoint": url,
            "n_requests": len(calls),
            "keys": keys,
            "input_file": input_path.name,
            "input_file_id": None,
            "batch_id": None,
            "status": "prepared",
            "created_at": time.time(),
        }
        _save(folder, state)
    if not state.get("input_file_id"):
        data = (folder / state["input_file"]).read_bytes()
        f = await client.files.create(file=(state["input_file"], data, "application/jsonl"), purpose="batch")
        state["input_file_id"] = f.id
        _save(folder, state)
    if not state.get("batch_id"):
        found = await _find_batch(client, job, state["input_file_id"])
        if found is None:
            b = await client.batches.create(
                input_file_id=state["input_file_id"],
                endpoint=state["endpoint"],
                completion_window="24h",
                metadata={"stargate_job": job},
            )
            log.info("%s: submitted batch %s (%d requests, job %s)", backend.stage, b.id, len(calls), job)
        else:
            b = found
            log.info("%s: found batch %s already created for job %s", backend.stage, b.id, job)
        state["batch_id"], state["status"] = b.id, b.status
        _save(folder, state)
    return state


async def _find_batch(client, job: str, input_file_id: str):
    """A batch created for this job by a run that was killed before it could save the id."""
    seen = 0
    try:
        async for b in client.batches.list(limit=100):
            if (b.metadata or {}).get("stargate_job") == job or b.input_file_id == input_file_id:
                return b
            seen += 1
            if seen >= 1000:
                break
    except Exception as exc:  # listing is a best effort: creating a new batch is the fallback
        log.warning("could not list batches to look for job %s (%s)", job, exc)
    return None


async def _finish(backend: OpenAIBackend, client, folder: Path, state: dict, need: dict, entries: dict) -> list:
    """Poll a submitted job to its end and collect it. Returns failures among the calls in `need`."""
    import openai

    if not state.get("batch_id"):
        state = await _submit_from_state(backend, client, folder, state)
    poll_s = float(backend.options["batch_poll_s"])
    deadline = time.monotonic() + float(backend.options["batch_max_wait_s"])
    errors_in_a_row = 0
    while True:
        try:
            b = await client.batches.retrieve(state["batch_id"])
            errors_in_a_row = 0
        except (openai.APIConnectionError, openai.APIStatusError) as exc:
            errors_in_a_row += 1
            if errors_in_a_row > max(3, backend.max_retries):
                raise StargateError(
                    f"{backend.stage}: cannot poll batch {state['batch_id']} ({exc}); it keeps running "
                    f"on the server: rerun to resume it (state in {folder / state['job']}.json)"
                ) from None
            await asyncio.sleep(min(backend.backoff_max_s, backend.backoff_base_s * 2**errors_in_a_row))
            continue
        counts = b.request_counts.model_dump() if getattr(b, "request_counts", None) else {}
        if b.status != state.get("status") or counts != state.get("request_counts"):
            state["status"], state["request_counts"] = b.status, counts
            _save(folder, state)
            log.info("%s: batch %s %s %s", backend.stage, b.id, b.status, counts)
        if b.status in TERMINAL:
            break
        if time.monotonic() > deadline:
            raise StargateError(
                f"{backend.stage}: batch {b.id} still '{b.status}' after batch_max_wait_s="
                f"{backend.options['batch_max_wait_s']:g}; it keeps running: rerun to resume and collect it"
            )
        await asyncio.sleep(poll_s)
    return await _collect(backend, client, folder, state, b, need, entries)


async def _submit_from_state(backend, client, folder: Path, state: dict) -> dict:
    """A job killed before its batch existed: re-create the calls from its input file and submit."""
    from .openai_backend import ApiCall

    calls = []
    for line in (folder / state["input_file"]).read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        calls.append(_call_from_line(ApiCall, rec))
    return await _submit(backend, client, folder, calls)


def _call_from_line(cls, rec: dict):
    body = rec["body"]
    mt = body.get("max_tokens", body.get("max_completion_tokens"))
    sampling = {
        "n": body["n"],
        "temperature": body["temperature"],
        "top_p": body["top_p"],
        "max_tokens": mt,
        "seed": body.get("seed"),
    }
    from ..cost import estimate_prompt_tokens

    return cls(-1, 0, rec["custom_id"], body["messages"], sampling, estimate_prompt_tokens(body["messages"]))


async def _collect(backend: OpenAIBackend, client, folder: Path, state: dict, b, need: dict, entries: dict) -> list:
    from .openai_backend import ApiCall, validate_body

    requests = {}
    for line in (folder / state["input_file"]).read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        requests[rec["custom_id"]] = rec
    problems: dict[str, str] = {}
    stored = 0
    for file_id in (b.output_file_id, b.error_file_id):
        if not file_id:
            continue
        content = await client.files.content(file_id)
        for line in content.text.splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            key = rec.get("custom_id")
            if key not in requests:
                continue
            resp = rec.get("response") or {}
            body = resp.get("body") or {}
            if rec.get("error") or resp.get("status_code") != 200:
                err = rec.get("error") or body.get("error") or {}
                problems[key] = (
                    f"batch error {resp.get('status_code')}: {err.get('code', '')} {err.get('message', '')}".strip()
                )
                continue
            call = need.get(key) or _call_from_line(ApiCall, requests[key])
            problem = validate_body(body, call.sampling["n"])
            if problem:
                problems[key] = problem
                continue
            entry = backend.cache.get(key)
            if entry is None:
                entry = backend.store(call, body, kind="batch")
                stored += 1
            if key in need:
                entries[key] = entry
    missing = [k for k in requests if k not in problems and backend.cache.get(k) is None]
    for k in missing:
        problems[k] = f"no result in batch {b.id} (status {b.status})"
    if b.status == "failed" and getattr(b, "errors", None):
        log.error("%s: batch %s failed: %s", backend.stage, b.id, b.errors)
    state["status"] = "collected"
    state["collected"] = {"stored": stored, "problems": len(problems), "batch_status": b.status}
    _save(folder, state)
    log.info(
        "%s: batch %s collected: %d results stored, %d without a result", backend.stage, b.id, stored, len(problems)
    )
    return [(need[k], f"{need[k].where()}: {msg}") for k, msg in problems.items() if k in need]
