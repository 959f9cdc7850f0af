"""An independent reference for the paper's tokenizer, built from Mistral's SentencePiece model directly.

`mistral-common` ships `data/tokenizer.model.v1`, the SentencePiece model of Mistral-7B(-Instruct) v0.1/v0.2
and Mixtral-8x7B v0.1. This module reads it with protobuf (transformers' bundled schema) and encodes and
decodes in plain Python, sharing no code with `stargate` and not using the `tokenizers` library:

* encode: the text is split at the special tokens ``<unk>``, ``<s>``, ``</s>``; every non-empty segment in
  between is encoded as SentencePiece encodes a text (identity normalizer, ``add_dummy_prefix``: a "▁" in
  front, every space escaped to "▁") with SentencePiece's BPE algorithm (bpe_model.cc: repeatedly merge
  the adjacent pair whose concatenation is a piece with the highest score, the leftmost on ties; characters
  that are no piece fall back to their UTF-8 bytes ``<0xNN>``). That is what transformers 4.39's legacy
  ``LlamaTokenizer`` did with the model, segment by segment, and what the March-2024 tokenizer.json was
  converted to reproduce (its "legacy" normalizer prepends "▁" to every segment);
* decode: the pieces joined, "▁" read as a space, byte pieces as bytes, one leading space stripped (the
  tokenizer.json's decoder), special tokens kept as text (``skip_special_tokens=False``);
* `vllm_text`: vLLM 0.3.3's ``.text`` of generated ids: the new pieces joined the same way, special tokens
  skipped, nothing stripped (its incremental detokenizer keeps the first token's space).
"""

from __future__ import annotations

import heapq
import importlib.util
import re
from functools import cache
from pathlib import Path

import pytest

SPECIALS = ("<unk>", "<s>", "</s>")
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def sentencepiece_model_path() -> Path:
    spec = importlib.util.find_spec("mistral_common")
    if spec is None or not spec.origin:
        pytest.skip("mistral-common is not installed: no Mistral SentencePiece model")
    return Path(spec.origin).parent / "data" / "tokenizer.model.v1"


class SentencePieceReference:
    def __init__(self, model_file: Path):
        try:
            from transformers.utils import sentencepiece_model_pb2_new as pb2
        except ImportError:  # pragma: no cover - protobuf < 4
            from transformers.utils import sentencepiece_model_pb2 as pb2

        proto = pb2.ModelProto()
        proto.ParseFromString(model_file.read_bytes())
        assert proto.trainer_spec.model_type == 2 and proto.trainer_spec.byte_fallback
        assert proto.normalizer_spec.add_dummy_prefix and proto.normalizer_spec.name == "identity"
        self.pieces = [p.piece for p in proto.pieces]
        self.types = [p.type for p in proto.pieces]
        self.id_of = {p: i for i, p in enumerate(self.pieces)}
        # SentencePiece's `pieces_`: what a merge may produce (normal, user-defined, unused pieces)
        self.score = {p.piece: p.score for p in proto.pieces if p.type in (NORMAL, USER_DEFINED, UNUSED)}
        self.byte_id = {int(p[3:5], 16): i for i, p in enumerate(self.pieces) if self.types[i] == BYTE}
        self._split = re.compile("(" + "|".join(re.escape(s) for s in SPECIALS) + ")")

    # ------------------------------------------------------------------ encode
    def bpe(self, normalized: str) -> list[int]:
        """SentencePiece's BPE over an already normalized string (spaces as "▁")."""
        symbols = list(normalized)
        prev = list(range(-1, len(symbols) - 1))
        nxt = list(range(1, len(symbols) + 1))
        nxt[-1] = -1
        agenda: list[tuple[float, int, int, str]] = []

        def push(left: int, right: int) -> None:
            if left == -1 or right == -1:
                return
            merged = symbols[left] + symbols[right]
            if merged in self.score:  # highest score first, then the leftmost
                heapq.heappush(agenda, (-self.score[merged], left, right, merged))

        for i in range(1, len(symbols)):
            push(i - 1, i)
        while agenda:
            _, left, right, merged = heapq.heappop(agenda)
            if (
                not symbols[left]
                or not symbols[right]
                or nxt[left] != right
                or symbols[left] + symbols[right] != merged
            ):
                continue  # stale: one side was merged away since
            symbols[left], symbols[right] = merged, ""
            nxt[left] = nxt[right]
            if nxt[right] != -1:
                prev[nxt[right]] = left
            push(prev[left], left)
            push(left, nxt[left])
        ids = []
        for s in symbols:
            if not s:
                continue
            if s in self.score:
                ids.append(self.id_of[s])
            else:  # byte fallback
                ids.extend(self.byte_id[b] for b in s.encode("utf-8"))
        return ids

    def encode_segment(self, text: str, dummy_prefix: bool = True) -> list[int]:
        if not text:
            return []
        return self.bpe(("▁" if dummy_prefix else "") + text.replace(" ", "▁"))

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of `text`: special tokens matched, every other segment SentencePiece-encoded."""
        ids = [self.id_of["<s>"]] if add_special_tokens else []
        for part in self._split.split(text):
            ids += [self.id_of[part]] if part in SPECIALS else self.encode_segment(part)
        return ids

    # ------------------------------------------------------------------ decode
    def _join(self, ids: list[int], skip_special: bool) -> str:
        out, pending = [], bytearray()
        for i in ids:
            if self.types[i] == BYTE:
                pending.append(int(self.pieces[i][3:5], 16))
                continue
            if pending:
                out.append(pending.decode("utf-8", errors="replace"))
                pending = bytearray()
            if self.types[i] in (CONTROL, UNKNOWN):
                if not skip_special:
                    out.append(self.pieces[i])
            else:
                out.append(self.pieces[i].replace("▁", " "))
        if pending:
            out.append(pending.decode("utf-8", errors="replace"))
        return "".join(out)

    def decode(self, ids: list[int]) -> str:
        """transformers 4.39 ``decode(ids)`` of the March-2024 tokenizer (special tokens kept)."""
        text = self._join(ids, skip_special=False)
        return text[1:] if text.startswith(" ") else text

    def vllm_text(self, new_ids: list[int]) -> str:
        """vLLM 0.3.3's ``.text`` of generated ids (skip_special_tokens=True)."""
        return self._join(new_ids, skip_special=True)

    def tokens(self, ids: list[int]) -> list[str]:
        return [self.pieces[i] for i in ids]


@cache
def reference() -> SentencePieceReference:
    return SentencePieceReference(sentencepiece_model_path())
