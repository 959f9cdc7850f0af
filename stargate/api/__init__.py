"""API calls to OpenAI-compatible servers, in layers whose imports point one way only:

    requests    ApiCall: body building and validation, cache key, prompt-token estimate
    accounting  price table, ledger, budget, call cost: the one place that decides whether a call fits
    responses   the cache entry of an answered (or refused) call: ledger line first, then the entry
    settings    the small, explicit settings object the runners receive
    online      async runner: bounded concurrency, retries, backoff, Retry-After
    batch       Batch API runner: submit, poll, collect, resume after a kill

`stargate/backends/openai_backend.py` is the thin facade over these (the `openai` backend).
This package imports nothing at import time, so importing one submodule never pulls in the others.
"""
