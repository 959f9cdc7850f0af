"""The one way a local model's tokenizer is loaded: `load_tokenizer(model, prompt_set, choice)`.

Every place that tokenizes for a model (the hf and vllm backends, the worker-process handle, SFT training,
and through them the scoring spans and the SFT loss masks) calls it. Without a pin it is
``AutoTokenizer.from_pretrained(model)``, as before.

A prompt set may pin its tokenizer (manifest key ``tokenizer``). paper_v1 pins the tokenizer the paper's
code ran with (transformers 4.39 and vLLM 0.3.3 loading Mistral-7B-Instruct-v0.2's, and Mixtral-8x7B-
Instruct-v0.1's, tokenizer.json of March 2024), rebuilt from Mistral's SentencePiece model as
``mistral-common`` ships it (``data/tokenizer.model.v1``, checked by its sha256) with every setting written
out here (`build_mistral_v1_legacy`):

* BPE with byte fallback over the model's 32,000 pieces; merges are the pairs of pieces whose concatenation
  is a piece, ordered by that piece's score and, among equal scores, in vocabulary order (the order
  transformers' converter of 2023 wrote into tokenizer.json; today's ``generate_merges`` breaks ties by
  piece length instead, which changes how long runs of spaces merge);
* the legacy normalizer: "▁" prepended to every text segment (also right after ``<s>`` / ``</s>``) and
  every space turned into "▁"; no pre-tokenizer;
* ``<unk>``, ``<s>``, ``</s>`` as special tokens, matched in the text;
* decoder: "▁" read as a space, byte fallback, fused, one leading space stripped;
* post-processor: ``<s>`` before the text when special tokens are added.

Why a pin: transformers >= 5 rebuilds Mistral's ``LlamaTokenizer`` from a model folder with a Metaspace
pre-tokenizer and no legacy normalizer, whatever the folder's tokenizer.json holds, and the folder's own
``legacy`` flag picks between two other behaviours: the ids of the paper's inputs would then depend on the
transformers version and the snapshot (e.g. ``<s> [INST]`` loses the "▁" token after ``<s>`` that the
original's decode/re-encode round trip produced).

The model folder's own tokenizer is still loaded, to check that its vocabulary is the pinned one: a folder
whose tokenizer is another (another model family, a resized vocabulary) is an error naming both
vocabularies' sha256. A role whose model is of another family on purpose (config/ablations/
gemma-roleplayer.yaml) sets its backend option ``tokenizer: model``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import struct
from functools import cache
from pathlib import Path
from typing import Any

from .errors import StargateError
from .prompts import PINNED_TOKENIZERS as PINNED
from .prompts import load_prompt_set

MISTRAL_V1_LEGACY = "mistral_v1_legacy"  # the names a prompt set's manifest may give (key `tokenizer`): PINNED
CHOICES = ("prompt_set", "model")  # backend option `tokenizer`

# mistral-common's copy of Mistral-7B(-Instruct) v0.1/v0.2's and Mixtral-8x7B v0.1's SentencePiece model
SENTENCEPIECE_FILE = "tokenizer.model.v1"
SENTENCEPIECE_SHA256 = "dadfd56d766715c61d2ef780a525ab43b8e6da4de6865bda3d95fdef5e134055"


def load_tokenizer(model: str | Path, prompt_set: str | None = None, choice: str = "prompt_set") -> Any:
    """The tokenizer of the local model folder (or Hub id) `model` as every stage uses it.

    `prompt_set`: the run's prompt set; when its manifest pins a tokenizer (and `choice` is "prompt_set",
    the default) that tokenizer is returned, after checking that the model's own tokenizer has the same
    vocabulary. `choice` "model": the model's own tokenizer, whatever the prompt set pins. A set that ships
    its own chat template gives it to the pinned tokenizer."""
    from transformers import AutoTokenizer

    if choice not in CHOICES:
        raise StargateError(f"tokenizer option '{choice}' is not one of {', '.join(CHOICES)}")
    own = AutoTokenizer.from_pretrained(str(model))
    pin = pinned_name(prompt_set) if choice == "prompt_set" else None
    if pin is None:
        return own
    pinned = build_pinned(pin, name_or_path=str(model))
    mine, theirs = vocabulary_sha256(own), vocabulary_sha256(pinned)
    if mine != theirs:
        raise StargateError(
            f"model {model}: its tokenizer ({type(own).__name__}, {len(own)} tokens, vocabulary sha256 {mine}) is "
            f"not the tokenizer prompt set {prompt_set} pins ({pin}: {describe(pin)}, vocabulary sha256 "
            f"{theirs}). Fix: use a model with that tokenizer, or, for a model of another family on purpose, "
            "set its role's backend option `tokenizer: model` (roles.<role>.options) to tokenize with the "
            "model's own tokenizer"
        )
    template = load_prompt_set(prompt_set).chat_template
    pinned.chat_template = template if template is not None else getattr(own, "chat_template", None)
    return pinned


def pinned_name(prompt_set: str | None) -> str | None:
    """The tokenizer the prompt set's manifest pins, or None."""
    if not prompt_set:
        return None
    return load_prompt_set(prompt_set).tokenizer


def describe(pin: str) -> str:
    if pin == MISTRAL_V1_LEGACY:
        return (
            "Mistral-7B-Instruct-v0.2's SentencePiece model (mistral-common data/tokenizer.model.v1) as "
            "transformers 4.39 loaded its March-2024 tokenizer.json"
        )
    raise StargateError(f"unknown pinned tokenizer '{pin}' (known: {', '.join(PINNED)})")


def vocabulary_sha256(tokenizer: Any) -> str:
    """sha256 of a tokenizer's vocabulary (every token and its id, added tokens included): what must agree
    between a model folder and a pinned tokenizer (normalizers and decoders may differ, the ids may not)."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: (kv[1], kv[0]))
    return hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode("utf-8")).hexdigest()


def build_pinned(pin: str, name_or_path: str = "") -> Any:
    """A fresh fast tokenizer for the pinned name (callers may set its pad token or chat template)."""
    from transformers import PreTrainedTokenizerFast

    describe(pin)  # an unknown name is an error
    from tokenizers import Tokenizer

    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_mistral_v1_legacy_json()),
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        clean_up_tokenization_spaces=False,
        name_or_path=name_or_path,
    )


def sentencepiece_model_path() -> Path:
    """mistral-common's copy of the SentencePiece model, checked against the pinned sha256."""
    spec = importlib.util.find_spec("mistral_common")
    if spec is None or not spec.origin:
        raise StargateError(
            "prompt set paper_v1 tokenizes with Mistral's SentencePiece model as the package mistral-common "
            "ships it, and mistral-common is not installed. Fix: pip install 'mistral-common>=1.5'"
        )
    path = Path(spec.origin).parent / "data" / SENTENCEPIECE_FILE
    if not path.is_file():
        raise StargateError(f"mistral-common has no data/{SENTENCEPIECE_FILE} ({path}); install mistral-common>=1.5")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SENTENCEPIECE_SHA256:
        raise StargateError(
            f"{path} has sha256 {digest}, not the pinned {SENTENCEPIECE_SHA256} of Mistral-7B-Instruct-v0.2's "
            "SentencePiece model: this mistral-common ships another file under that name"
        )
    return path


@cache
def _mistral_v1_legacy_json() -> str:
    return build_mistral_v1_legacy(sentencepiece_model_path().read_bytes()).to_str()


def build_mistral_v1_legacy(model_proto: bytes) -> Any:
    """The `tokenizers.Tokenizer` of the module docstring, from a serialized SentencePiece ModelProto."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors

    pieces, model_type, byte_fallback = read_sentencepiece(model_proto)
    if model_type != 2 or not byte_fallback:  # BPE, byte fallback
        raise StargateError("the SentencePiece model is not a byte-fallback BPE model (not Mistral's v1)")
    vocab = {piece: i for i, (piece, _, _) in enumerate(pieces)}
    tok = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=merges_of(pieces),
            unk_token="<unk>",
            fuse_unk=True,
            byte_fallback=True,
        )
    )
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in ("<unk>", "<s>", "</s>")])
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    return tok


def merges_of(pieces: list[tuple[str, float, int]]) -> list[tuple[str, str]]:
    """Every split of a piece into two pieces, ordered by the piece's score (highest first), ties in
    vocabulary order of the piece, then of the left and right halves (transformers' 2023 converter)."""
    vocab = {piece: i for i, (piece, _, _) in enumerate(pieces)}
    merges = []
    for piece, score, _ in pieces:
        local = [
            (piece[:k], piece[k:], score) for k in range(1, len(piece)) if piece[:k] in vocab and piece[k:] in vocab
        ]
        local.sort(key=lambda m: (vocab[m[0]], vocab[m[1]]))
        merges.extend(local)
    merges.sort(key=lambda m: -m[2])  # stable: equal scores keep the order above
    return [(a, b) for a, b, _ in merges]


# ----------------------------------------------------------------- SentencePiece's ModelProto, read by hand
# (no protobuf package needed): ModelProto.pieces = field 1 (SentencePiece: piece = 1, score = 2, type = 3);
# ModelProto.trainer_spec = field 2 (model_type = 3, byte_fallback = 35).


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def _fields(data: bytes):
    """(field number, wire type, value) of a protobuf message: ints for varints, bytes otherwise."""
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 1:
            value, i = data[i : i + 8], i + 8
        elif wire == 2:
            n, i = _varint(data, i)
            value, i = data[i : i + n], i + n
        elif wire == 5:
            value, i = data[i : i + 4], i + 4
        else:
            raise StargateError(f"not a SentencePiece model (protobuf wire type {wire})")
        yield number, wire, value


def read_sentencepiece(data: bytes) -> tuple[list[tuple[str, float, int]], int, bool]:
    """([(piece, score, type)], trainer model_type, byte_fallback) of a serialized SentencePiece model."""
    pieces, model_type, byte_fallback = [], 1, False
    for number, wire, value in _fields(data):
        if number == 1 and wire == 2:
            piece, score, kind = "", 0.0, 1  # proto defaults (type NORMAL)
            for n, w, v in _fields(value):
                if n == 1 and w == 2:
                    piece = v.decode("utf-8")
                elif n == 2 and w == 5:
                    score = struct.unpack("<f", v)[0]
                elif n == 3 and w == 0:
                    kind = v
            pieces.append((piece, score, kind))
        elif number == 2 and wire == 2:
            for n, w, v in _fields(value):
                if n == 3 and w == 0:
                    model_type = v
                elif n == 35 and w == 0:
                    byte_fallback = bool(v)
    if not pieces:
        raise StargateError("not a SentencePiece model (no pieces)")
    return pieces, model_type, byte_fallback
