"""The hf backend: batched generation with per-prompt seeds, and summed log-probs against a hand computation."""

from __future__ import annotations

import pytest
import torch

from stargate.backends import Sampling, load_backend
from stargate.errors import StargateError


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    b = load_backend({"backend": "hf", "options": {"dtype": "float32", "batch_size": 3}}, str(tiny_model_dir))
    yield b
    b.close()


CHATS = [
    [{"role": "user", "content": "Plan a trip for me."}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What should I cook tonight, given I like spicy food?"},
    ],
    "<|im_start|>user\nA raw prompt<|im_end|>\n<|im_start|>assistant\n",
    [{"role": "user", "content": "Hi"}],
]


def test_generate_n_samples_reproducible(backend):
    s = Sampling(n=3, temperature=1.0, top_p=0.95, max_tokens=6, seed=7)
    before = backend.stats.to_dict()
    first = backend.generate(CHATS, s)
    assert [len(o) for o in first] == [3, 3, 3, 3]
    after = backend.stats.to_dict()
    assert after["n_prompts"] - before["n_prompts"] == 4 and after["n_outputs"] - before["n_outputs"] == 12
    assert 0 < after["n_tokens_out"] - before["n_tokens_out"] <= 12 * 6
    assert backend.generate(CHATS, s) == first  # same seed, same outputs
    other = backend.generate(CHATS, Sampling(n=3, temperature=1.0, top_p=0.95, max_tokens=6, seed=8))
    assert other != first
    assert any(len(set(o)) > 1 for o in first)  # the n samples of a prompt are distinct draws


SAMPLE = Sampling(n=2, temperature=1.0, top_p=0.9, max_tokens=8)


def test_samples_do_not_depend_on_batching(backend, tiny_model_dir):
    """The seeding contract: a prompt's samples depend on its seed only, not on its batch or the batch size."""
    seeds = [11, 22, 33, 44]
    together = backend.generate(CHATS, SAMPLE, seeds)
    alone = [backend.generate([c], SAMPLE, [s])[0] for c, s in zip(CHATS, seeds, strict=True)]
    assert together == alone
    assert backend.generate(CHATS[::-1], SAMPLE, seeds[::-1]) == together[::-1]
    for size in (1, 8):
        other = load_backend(
            {"backend": "hf", "options": {"dtype": "float32", "batch_size": size}}, str(tiny_model_dir)
        )
        try:
            assert other.generate(CHATS, SAMPLE, seeds) == together, f"batch_size {size}"
        finally:
            other.close()
    # the seed is what decides: another seed for one prompt changes that prompt's samples only
    changed = backend.generate(CHATS, SAMPLE, [11, 23, 33, 44])
    assert changed[1] != together[1] and [changed[i] for i in (0, 2, 3)] == [together[i] for i in (0, 2, 3)]


def test_default_seeds_come_from_sampling_seed_and_prompt(backend):
    s = Sampling(n=1, temperature=1.0, max_tokens=8, seed=5)
    assert backend.generate(CHATS, s) == [backend.generate([c], s)[0] for c in CHATS]
    with pytest.raises(StargateError, match="3 seeds for 4 prompts"):
        backend.generate(CHATS, s, [1, 2, 3])


def test_unknown_option_is_an_error(tiny_model_dir):
    with pytest.raises(StargateError, match="unknown option.*gpus.*hf backend"):
        load_backend({"backend": "hf", "options": {"gpus": 2}}, str(tiny_model_dir))


def test_greedy_is_batch_invariant(backend):
    s = Sampling(n=1, temperature=0.0, max_tokens=5)
    together = backend.generate(CHATS, s)
    alone = [backend.generate([c], s)[0] for c in CHATS]
    assert together == alone
    twice = backend.generate(CHATS, Sampling(n=2, temperature=0.0, max_tokens=5))  # shared-prefix path
    assert [o[0] for o in twice] == [o[0] for o in together] and all(o[0] == o[1] for o in twice)


def _hand_logprob(model_dir, tokenizer, context_text: str, target_text: str) -> tuple[float, int]:
    """log p(target | context) from a plain forward pass over separately tokenized pieces."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ctx = tokenizer(context_text, add_special_tokens=False)["input_ids"]
    tgt = tokenizer(target_text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([ctx + tgt])).logits[0]
    logp = torch.log_softmax(logits, dim=-1)
    total = sum(logp[len(ctx) - 1 + i, tok].item() for i, tok in enumerate(tgt))
    return total, len(tgt)


def test_score_matches_hand_computation(backend, tiny_model_dir):
    tok = backend.tokenizer
    context = [{"role": "user", "content": "My name is Maya.\n\nRecommend a book."}]
    target = "Maya, try Dune by Frank Herbert."
    ctx_text = tok.apply_chat_template(context, tokenize=False, add_generation_prompt=True)
    expected, n = _hand_logprob(tiny_model_dir, tok, ctx_text, target)
    got = backend.score([context], [target])[0]
    assert got.n_tokens == n
    assert got.logprob == pytest.approx(expected, abs=1e-4)
    # raw-string context: the same numbers when the string is the rendered chat
    raw = backend.score([ctx_text], [target])[0]
    assert raw.n_tokens == n and raw.logprob == pytest.approx(expected, abs=1e-4)


def test_score_chain_rule_no_off_by_one(backend):
    """log p(ab | c) == log p(a | c) + log p(b | c a): the span boundary is exact on both sides."""
    c, a, b = "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n", "Sure", " thing friend"
    whole = backend.score([c], [a + b])[0]
    first, second = backend.score([c, c + a], [a, b])
    assert whole.n_tokens == first.n_tokens + second.n_tokens
    assert whole.logprob == pytest.approx(first.logprob + second.logprob, abs=1e-4)


def test_score_padding_does_not_leak(backend):
    contexts = [[{"role": "user", "content": "x" * n}] for n in (1, 40, 7, 90)]
    targets = ["Short.", "A somewhat longer target sentence here.", "Mid one.", "Ok"]
    batched = backend.score(contexts, targets)
    single = [backend.score([c], [t])[0] for c, t in zip(contexts, targets, strict=True)]
    for x, y in zip(batched, single, strict=True):
        assert x.n_tokens == y.n_tokens and x.logprob == pytest.approx(y.logprob, abs=1e-4)
    assert all(s.logprob < 0 for s in batched)


def test_shared_prompt_cache_equals_encoding_every_sample(backend, monkeypatch):
    """n > 1 encodes the prompt once and repeats its KV cache: the samples equal those of n separate encodings."""
    from transformers import DynamicCache

    shared = backend.generate(CHATS, SAMPLE, [5, 6, 7, 8])
    owner = next(c for c in DynamicCache.__mro__ if "batch_repeat_interleave" in vars(c))
    monkeypatch.delattr(owner, "batch_repeat_interleave")
    assert backend.generate(CHATS, SAMPLE, [5, 6, 7, 8]) == shared


LONG = "Please read these instructions with care before you answer. " * 6  # > SHARED_MIN tokens


def test_a_shared_prompt_prefix_is_encoded_once_with_the_same_samples(tiny_model_dir, monkeypatch):
    """Prompts that share a long prefix (the paper's instruction after the same user name) have it encoded
    once per batch group, then only their suffixes run; the samples equal those of encoding every prompt whole."""
    import stargate.backends.hf as hf

    b = load_backend({"backend": "hf", "options": {"dtype": "float32", "batch_size": 6}}, str(tiny_model_dir))
    prompts = [[{"role": "user", "content": f"{LONG} Task: {t}"}] for t in ("plan a trip.", "cook.", "read a book?")]
    seeds = [1, 2, 3]
    shapes: list[tuple[int, int]] = []
    hook = b.model.register_forward_pre_hook(lambda m, a, kw: shapes.append(tuple(kw["input_ids"].shape)), with_kwargs=True)  # fmt: skip
    try:
        shared = b.generate(prompts, SAMPLE, seeds)  # n=2, batch 6: the three prompts in one batch
        grouped = shapes[:2]
        greedy = b.generate(prompts, Sampling(n=1, temperature=0.0, max_tokens=8), seeds)
        monkeypatch.setattr(hf, "SHARED_MIN", 10**9)  # no grouping: every prompt encoded whole
        shapes.clear()
        assert b.generate(prompts, SAMPLE, seeds) == shared
        whole = shapes[0]
        assert b.generate(prompts, Sampling(n=1, temperature=0.0, max_tokens=8), seeds) == greedy
    finally:
        hook.remove()
    # the next-token logits themselves agree (a random tiny model's samples hardly depend on them)
    rows = [hf.prompt_ids(b.tokenizer, p) for p in prompts]
    with torch.no_grad():
        monkeypatch.setattr(hf, "SHARED_MIN", 32)
        *_, grouped_logits = b._prefill(rows, [len(r) - 1 for r in rows])
        monkeypatch.setattr(hf, "SHARED_MIN", 10**9)
        *_, whole_logits = b._prefill(rows, [len(r) - 1 for r in rows])
    assert torch.allclose(grouped_logits[:, -1], whole_logits[:, -1], atol=1e-4)
    assert (grouped_logits[:, -1] - grouped_logits[:, -1].mean()).abs().max() > 1e-3  # not a constant
    # one row for the shared prefix, then the three suffixes (a few tokens each)
    assert grouped[0][0] == 1 and grouped[0][1] > 40, grouped
    assert grouped[1][0] == 3 and grouped[1][1] < 15, grouped
    assert whole[0] == 3 and whole[1] > grouped[0][1], whole
    b.close()


def test_batched_scores_equal_full_logits_and_lm_head_sees_targets_only(backend, tiny_model_dir):
    """Scores of a mixed-length batch equal the full-logits computation of each pair alone (the pre-cut
    path: every position through the lm_head), while the lm_head runs on target positions only."""
    tok = backend.tokenizer
    contexts = [[{"role": "user", "content": "y" * n + " what now?"}] for n in (3, 60, 17, 120, 1)]
    targets = ["A.", "Two words then more words here.", "Mid length answer.", "Ok then.", "Fine, " * 9]
    seen = []
    hook = backend.model.get_output_embeddings().register_forward_hook(lambda m, i, o: seen.append(i[0].shape[1]))
    try:
        got = backend.score(contexts, targets)
    finally:
        hook.remove()
    for c, t, g in zip(contexts, targets, got, strict=True):
        ctx_text = tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
        expected, n = _hand_logprob(tiny_model_dir, tok, ctx_text, t)
        assert g.n_tokens == n and g.logprob == pytest.approx(expected, abs=1e-4)
    longest = max(s.n_tokens for s in got)
    assert seen and max(seen) == longest  # lm_head positions per row: the longest target of the batch


def test_out_of_memory_halves_the_batch_with_the_same_results(backend, monkeypatch):
    """A simulated GPU OOM on batches over 1 row: scores and seeded samples equal those of the full batch."""
    golds = ["Sure.", "Something spicy, like a curry.", "ok", "Hello there!"]
    s = Sampling(n=2, temperature=1.0, top_p=0.95, max_tokens=5, seed=3)
    want_scores, want_samples = backend.score(CHATS, golds), backend.generate(CHATS, s)
    real_score, real_decode = backend._score_batch, backend._decode
    sizes: list[int] = []

    def small_gpu(real):
        def run(first, *args):
            sizes.append(len(first))
            if len(first) > 2:  # rows: 1 prompt x n=2 samples fit, more do not
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return real(first, *args)

        return run

    monkeypatch.setattr(backend, "_score_batch", small_gpu(real_score))
    monkeypatch.setattr(backend, "_decode", small_gpu(real_decode))
    got = backend.score(CHATS, golds)  # other batch shapes: float noise only
    assert [g.n_tokens for g in got] == [w.n_tokens for w in want_scores]
    assert [g.logprob for g in got] == pytest.approx([w.logprob for w in want_scores], abs=1e-4)
    assert backend.generate(CHATS, s) == want_samples
    assert max(sizes) == 3 and 1 in sizes  # batches of 3 failed, then ran smaller


def _draws(logits, top_p: float, n: int, monkeypatch=None, first: int | None = None) -> list[int]:
    from types import SimpleNamespace

    import stargate.backends.hf as hf

    if first is not None:
        monkeypatch.setattr(hf, "NUCLEUS_FIRST", first)
    me = SimpleNamespace(torch=torch)
    me._nucleus_floor = lambda probs, top_p: hf.HFBackend._nucleus_floor(me, probs, top_p)
    s = Sampling(n=1, temperature=1.0, top_p=top_p, max_tokens=1)
    rows = logits.repeat(n, 1)
    gens = [torch.Generator().manual_seed(i) for i in range(n)]
    return hf.HFBackend._pick(me, rows, s, gens, [False] * n).tolist()


def test_top_p_draws_come_from_exactly_the_nucleus(monkeypatch):
    """The partial sort finds the nucleus when it is narrow and falls back to a full sort when it is wide
    (a flat distribution): every draw is inside the nucleus, and a wide nucleus is not cut to NUCLEUS_FIRST."""
    torch.manual_seed(0)
    peaked = torch.randn(5000) * 4
    p = torch.softmax(peaked, -1)
    order = p.argsort(descending=True)
    nucleus = set(order[: int(((p[order].cumsum(0) - p[order]) <= 0.9).sum())].tolist())
    draws = _draws(peaked, 0.9, 400)
    assert set(draws) <= nucleus and len(set(draws)) > 5
    # the same draws as sorting the whole vocabulary (the nucleus holds the same tokens in the same order)
    assert _draws(peaked, 0.9, 400, monkeypatch, first=5000) == draws

    flat = -torch.arange(1000) / 500  # slowly falling: a nucleus of several hundred tokens, > NUCLEUS_FIRST
    q = torch.softmax(flat, -1)
    wide_nucleus = int(((q.cumsum(0) - q) <= 0.9).sum())
    assert wide_nucleus > 300
    wide = _draws(flat, 0.9, 1000, monkeypatch, first=256)
    assert max(wide) < wide_nucleus and max(wide) > 256  # drawn from the whole nucleus, not the first 256


def test_scores_with_a_shared_context_prefix_match_the_hand_computation(tiny_model_dir, monkeypatch):
    """A pair's conversations share the context's start (name, task): it is encoded once per batch group,
    and every score still equals the hand computation (and the ungrouped path)."""
    import stargate.backends.hf as hf

    b = load_backend({"backend": "hf", "options": {"dtype": "float32", "batch_size": 4}}, str(tiny_model_dir))
    tok = b.tokenizer
    contexts = [
        [{"role": "user", "content": f"{LONG} Task: cook."}, {"role": "assistant", "content": q}]
        + [{"role": "user", "content": "Fine."}]
        for q in ("Spicy?", "What do you like to eat in the evening?", "Vegan?")
    ] + [[{"role": "user", "content": "Short and alone."}]]
    targets = ["Curry it is.", "Soup.", "A salad with beans and a long tail of words.", "Ok."]
    shapes: list[tuple[int, int]] = []
    hook = b.model.register_forward_pre_hook(lambda m, a, kw: shapes.append(tuple(kw["input_ids"].shape)), with_kwargs=True)  # fmt: skip
    try:
        got = b.score(contexts, targets)
    finally:
        hook.remove()
    assert shapes[0][0] == 2 and shapes[1][0] == 4, shapes  # prefixes: the shared one + the lone row
    for c, t, g in zip(contexts, targets, got, strict=True):
        ctx_text = tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
        expected, n = _hand_logprob(tiny_model_dir, tok, ctx_text, t)
        assert g.n_tokens == n and g.logprob == pytest.approx(expected, abs=1e-4)
    monkeypatch.setattr(hf, "SHARED_MIN", 10**9)
    assert [s.logprob for s in b.score(contexts, targets)] == pytest.approx([s.logprob for s in got], abs=1e-4)
    b.close()
