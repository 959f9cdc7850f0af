"""The paper's tokenizer and a tiny random model around it, built offline for tests.

`mistral-common` ships `tokenizer.model.v1`, the SentencePiece model of Mistral-7B(-Instruct) v0.1/v0.2
(32,000 pieces, <unk>=0, <s>=1, </s>=2; "[INST]" is plain text). We build the fast tokenizer the paper's
transformers 4.39 loaded from the v0.2 repo's tokenizer.json: BPE with byte fallback, the *legacy*
normalizer (prepend "▁" to every text segment, also after a special token, and spaces to "▁"), no
pre-tokenizer, a decoder that strips one leading space, and a post-processor that adds <s>. No
sentencepiece package is needed: the model proto is parsed with transformers' bundled protobuf schema.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

MODEL_FILE = "tokenizer.model.v1"


def sentencepiece_model_path() -> Path:
    spec = importlib.util.find_spec("mistral_common")
    if spec is None or not spec.origin:
        pytest.skip("mistral-common is not installed (pip install --no-deps mistral-common): no Mistral tokenizer")
    path = Path(spec.origin).parent / "data" / MODEL_FILE
    if not path.is_file():
        pytest.skip(f"mistral-common has no data/{MODEL_FILE}")
    return path


def build_tokenizer(chat_template: str | None = None):
    """Mistral-7B-Instruct-v0.2's tokenizer as of March 2024 (see module docstring)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors
    from transformers import PreTrainedTokenizerFast
    from transformers.tokenization_utils_base import generate_merges

    try:
        from transformers.utils import sentencepiece_model_pb2_new as pb2
    except ImportError:  # protobuf < 4
        from transformers.utils import sentencepiece_model_pb2 as pb2

    proto = pb2.ModelProto()
    proto.ParseFromString(sentencepiece_model_path().read_bytes())
    assert proto.trainer_spec.model_type == 2 and proto.trainer_spec.byte_fallback  # BPE with byte fallback
    vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
    merges = generate_merges(vocab, {p.piece: p.score for p in proto.pieces})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in ("<unk>", "<s>", "</s>")])
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        clean_up_tokenization_spaces=False,
        model_max_length=32768,
    )
    if chat_template is not None:
        fast.chat_template = chat_template
    return fast


def build_tiny_model(folder: Path, chat_template: str | None = None) -> Path:
    """The shared tiny random model (tests/conftest.py) with the paper's tokenizer, as a Hugging Face folder."""
    from conftest import build_tiny_model as build

    return build(folder, build_tokenizer(chat_template))
