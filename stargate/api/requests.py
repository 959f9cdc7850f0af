"""One API request: its chat, sampling, cache key and HTTP body; checks of prompts and responses.

A prompt becomes one `ApiCall` (n choices in one request), or n calls of one choice each with seeds
seed, seed+1, ... (`n_per_request: false`, for servers without `n`). The cache key covers everything
that changes the answer (`cache.py`); keys are unchanged from earlier versions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import StargateError
from .cache import normalize_sampling, request_key

VALID_ROLES = {"system", "user", "assistant", "developer", "tool"}
MAX_TOKENS_PARAMS = ("max_tokens", "max_completion_tokens")
CHARS_PER_TOKEN = 4.0
MESSAGE_OVERHEAD_TOKENS = 4  # role markers and separators per chat message
# A content filter refused the request: Azure answers 400 with code "content_filter" (inner code
# ResponsibleAIPolicyViolation), OpenAI "content_policy_violation"; a filtered completion has this finish_reason.
CONTENT_FILTER_CODES = {"content_filter", "content_policy_violation", "ResponsibleAIPolicyViolation"}
CONTENT_FILTER_FINISH = "content_filter"


class ApiCallError(StargateError):
    """A call failed after its retries (or with a non-retryable error). Names the prompt and cache key.

    `fatal`: the failure concerns every call (server down, bad key, unknown model), so no new call is
    started; a failure of one request only (400) lets the others finish first.
    """

    def __init__(self, message: str, fatal: bool = True):
        super().__init__(message)
        self.fatal = fatal


@dataclass
class ApiCall:
    """One HTTP request: prompt `index`, `sub` = which of n single-choice requests (n_per_request: false)."""

    index: int
    sub: int
    key: str
    messages: list[dict]
    sampling: dict
    prompt_tokens_est: int

    def body(self, model: str, max_tokens_param: str = "max_tokens", send_seed: bool = True) -> dict:
        s = self.sampling
        body = {
            "model": model,
            "messages": self.messages,
            "n": s["n"],
            "temperature": s["temperature"],
            "top_p": s["top_p"],
            max_tokens_param: s["max_tokens"],
        }
        if send_seed and s["seed"] is not None:
            body["seed"] = s["seed"]
        return body

    def max_output_tokens(self) -> int:
        return self.sampling["n"] * self.sampling["max_tokens"]

    def where(self) -> str:
        sub = f", request {self.sub + 1}" if self.sub else ""
        return f"prompt {self.index}{sub} (cache key {self.key})"


def check_chat(prompt: Any, i: int) -> list[dict]:
    """The prompt as a clean list of {role, content} messages, or a StargateError saying what to change."""
    if isinstance(prompt, str):
        raise StargateError(
            f"prompt {i} is a raw string, but the openai backend takes chat prompts (lists of role/content "
            f"messages) only: use a prompt set that renders chats for this role (e.g. prompts: fixed_v1), or "
            f"bind the role to the hf or vllm backend"
        )
    if not isinstance(prompt, list | tuple) or not prompt:
        raise StargateError(f"prompt {i} is not a chat (a non-empty list of messages)")
    out = []
    for m in prompt:
        if not isinstance(m, dict) or m.get("role") not in VALID_ROLES or not isinstance(m.get("content"), str):
            raise StargateError(
                f"prompt {i}: every message needs a role ({', '.join(sorted(VALID_ROLES))}) "
                f"and a string content, got {str(m)[:80]!r}"
            )
        out.append({"role": m["role"], "content": m["content"]})
    return out


def plan_calls(
    model: str,
    chats: Sequence[list[dict]],
    sampling: Any,
    seeds: Sequence[int | None],
    *,
    n_per_request: bool = True,
    max_tokens_param: str = "max_tokens",
    send_seed: bool = True,
) -> list[ApiCall]:
    """The requests for these chats, ordered by (prompt, sub), each with its cache key.

    `sampling` is a `backends.base.Sampling`; `seeds` holds one seed per chat (the prompt's own seed, so
    the same prompt gets the same seed however prompts are batched).
    """
    if len(seeds) != len(chats):
        raise StargateError(f"seeds: {len(seeds)} seed(s) for {len(chats)} prompt(s); give one seed per prompt")
    extra: dict[str, Any] = {}
    if max_tokens_param != "max_tokens":
        extra["max_tokens_param"] = max_tokens_param
    if not send_seed:
        extra["send_seed"] = False
    calls = []
    one_request = n_per_request or sampling.n == 1
    for i, (messages, seed) in enumerate(zip(chats, seeds, strict=True)):
        est = estimate_prompt_tokens(messages)
        if one_request:
            subs = [(0, sampling.n, seed)]
        else:
            subs = [(j, 1, None if seed is None else seed + j) for j in range(sampling.n)]
        for j, n, s_seed in subs:
            s = normalize_sampling(n, sampling.temperature, sampling.top_p, sampling.max_tokens, s_seed)
            calls.append(ApiCall(i, j, request_key(model, messages, s, extra), messages, s, est))
    return calls


def call_from_batch_line(rec: dict) -> ApiCall:
    """The call behind one line of a Batch API input file (custom_id = cache key)."""
    body = rec["body"]
    sampling = {
        "n": body["n"],
        "temperature": body["temperature"],
        "top_p": body["top_p"],
        "max_tokens": body.get("max_tokens", body.get("max_completion_tokens")),
        "seed": body.get("seed"),
    }
    return ApiCall(-1, 0, rec["custom_id"], body["messages"], sampling, estimate_prompt_tokens(body["messages"]))


def malformed_body(data: Any) -> str | None:
    """Why a reply is not a chat completion at all (None if it has the shape of one): a server or proxy
    fault (an error page, a truncated or mangled body), retried like a 5xx."""
    if not isinstance(data, dict):
        return f"the reply is not a JSON object but {type(data).__name__} {str(data)[:80]!r}"
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        keys = sorted(k for k, v in data.items() if v is not None)[:8]
        return f"the reply has no choices (not a chat completion: keys {keys})"
    for c in choices:
        if not isinstance(c, dict) or not isinstance(c.get("message"), dict):
            return "a choice has no message"
        if not isinstance(c["message"].get("content"), str | None):
            return f"a choice's message content is {type(c['message']['content']).__name__}, not text"
    if not isinstance(data.get("usage"), dict | None):
        return f"the reply's usage is {type(data['usage']).__name__}, not an object"
    return None


def validate_body(data: Any, n: int) -> str | None:
    """Why a chat-completion body is unusable (None if it is fine)."""
    problem = malformed_body(data)
    if problem is not None:
        return problem
    choices = data["choices"]
    if len(choices) != n:
        return (
            f"the server returned {len(choices)} choice(s) for n={n}; if it does not support n>1, "
            f"set the role option n_per_request: false"
        )
    return None


def content_filter_code(error: Any) -> str | None:
    """The content-filter code in an API error object ({code, innererror: {code}, ...}), else None."""
    if not isinstance(error, dict):
        return None
    if "error" in error and isinstance(error["error"], dict):
        error = error["error"]
    codes = [error.get("code"), (error.get("innererror") or {}).get("code")]
    for code in codes:
        if isinstance(code, str) and code in CONTENT_FILTER_CODES:
            return code
    return None


# ------------------------------------------------------------------------------------ token estimates
def estimate_tokens(text: str) -> int:
    """Token count of a text: tiktoken's cl100k_base when installed, else ~4 characters per token."""
    enc = _tiktoken()
    if enc is not None:
        return len(enc.encode(text, disallowed_special=()))
    return int(math.ceil(len(text) / CHARS_PER_TOKEN))


def estimate_prompt_tokens(messages: Sequence[dict]) -> int:
    return sum(estimate_tokens(str(m.get("content", ""))) + MESSAGE_OVERHEAD_TOKENS for m in messages) + 3


def tokenizer_name() -> str:
    return "tiktoken cl100k_base" if _tiktoken() is not None else f"~{CHARS_PER_TOKEN:g} characters per token"


_ENC: Any = False


def _tiktoken():
    global _ENC
    if _ENC is False:
        try:
            import tiktoken  # optional, never a dependency

            _ENC = tiktoken.get_encoding("cl100k_base")
        except Exception:  # not installed, or no cached encoding file (no network)
            _ENC = None
    return _ENC
