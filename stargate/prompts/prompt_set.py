"""A prompt set (`PromptSet`): its manifest, its texts, and every model input the stages build from them.

`load_prompt_set(name)` reads and checks a set (stargate/prompts/<name>/, files found by
`prompts.templates`); `provenance` is what an artifact's `.meta.json` records about its model inputs.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from ..config import CONDITIONS, CONDITIONS_PER_ITERATION
from ..encoding.vllm033 import PromptLengthContext, VllmTextPrompt
from ..errors import StargateError
from . import templates
from .templates import ANALYSIS_TEXTS, TEXT_NAMES, template_file, template_files

SPECIFIC_MAX = 4  # a rating <= 4 is "specific", >= 5 "general" (gpt-4-general-vs-specific/plot-categories.py)

Turn = dict[str, str]  # {"role": "questioner" | "roleplayer", "text": ...}
GENERATION_IO = ("token_ids", "vllm_0.3.3_text")
SCORE_SPANS = ("char_offsets", "prompt_length")
SFT_LABELS = ("char_offsets", "prefix_length")
# tokenizers a set may pin for local models (manifest key `tokenizer`; built in stargate.tokenization)
PINNED_TOKENIZERS = ("mistral_v1_legacy",)
# manifest keys with a fixed set of values (the first is the default when the key is absent)
CHOICES = {
    "sft_labels": SFT_LABELS,
    "shuffle_rotation": ("plus", "original"),
    "blank_gold": ("drop", "keep"),
}


@cache
def load_prompt_set(name: str) -> PromptSet:
    folder = templates.PROMPTS_DIR / name  # read at call time: tests point it at a copy
    if not (folder / "manifest.yaml").exists():
        raise StargateError(
            f"config key 'prompts': unknown prompt set '{name}' (available: {', '.join(templates.available_sets())})"
        )
    manifest = yaml.safe_load((folder / "manifest.yaml").read_text())
    texts = {key: template_file(name, manifest, key).read_text(encoding="utf-8") for key in TEXT_NAMES}
    io = manifest.get("generation_io", "token_ids")
    if io not in GENERATION_IO:
        raise StargateError(
            f"{folder / 'manifest.yaml'}: generation_io '{io}' is not one of {', '.join(GENERATION_IO)}"
        )
    if manifest.get("score_span", "char_offsets") not in SCORE_SPANS:
        raise StargateError(
            f"{folder / 'manifest.yaml'}: score_span '{manifest['score_span']}' is not one of {', '.join(SCORE_SPANS)}"
        )
    for key, values in CHOICES.items():
        if manifest.get(key, values[0]) not in values:
            raise StargateError(
                f"{folder / 'manifest.yaml'}: {key} '{manifest[key]}' is not one of {', '.join(values)}"
            )
    if manifest.get("tokenizer") is not None and manifest["tokenizer"] not in PINNED_TOKENIZERS:
        raise StargateError(
            f"{folder / 'manifest.yaml'}: tokenizer '{manifest['tokenizer']}' is not one of "
            f"{', '.join(PINNED_TOKENIZERS)}"
        )
    template = None
    if manifest.get("chat_template"):
        f = folder / manifest["chat_template"]
        if not f.is_file():
            raise StargateError(f"{folder / 'manifest.yaml'}: chat_template file {f.name} does not exist in {folder}")
        template = f.read_text(encoding="utf-8")
    return PromptSet(name=name, manifest=manifest, texts=texts, chat_template=template)


def _sha256(text: str | bytes) -> str:
    return hashlib.sha256(text.encode("utf-8") if isinstance(text, str) else text).hexdigest()


def tokenizer_sha256(tokenizer: Any) -> str | None:
    """Identity of a tokenizer's behaviour: sha256 of its serialized fast tokenizer (vocab, merges, normalizer,
    pre-tokenizer, decoder, added tokens); None for a tokenizer without one (API models)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    serialized = backend.to_str() if backend is not None and hasattr(backend, "to_str") else None
    return _sha256(serialized) if isinstance(serialized, str) else None


def provenance(prompt_set: str, tokenizer: Any = None) -> dict[str, Any]:
    """What an artifact's `.meta.json` records about how its model inputs were made.

    ``chat_template_sha256`` is the template actually used for chats: the prompt set's own file when it
    ships one, else the tokenizer's (None without either). ``prompt_files_sha256`` hashes every file the set
    reads (names and contents), so an edited template shows up even when the set keeps its name.
    """
    ps = load_prompt_set(prompt_set)
    files = sorted(template_files(prompt_set))
    h = hashlib.sha256()
    for f in files:
        h.update(Path(f).name.encode() + b"\0" + Path(f).read_bytes() + b"\0")
    template = ps.chat_template or getattr(tokenizer, "chat_template", None)
    return {
        "prompt_set": prompt_set,
        "prompt_files_sha256": h.hexdigest(),
        "chat_template_sha256": _sha256(template) if isinstance(template, str) else None,
        "tokenizer_sha256": tokenizer_sha256(tokenizer) if tokenizer is not None else None,
    }


@dataclass(frozen=True)
class PromptSet:
    name: str
    manifest: dict
    texts: dict[str, str]
    chat_template: str | None = None

    # ----------------------------------------------------------------- helpers
    @property
    def raw(self) -> bool:
        return self.manifest.get("render") == "raw_mistral"

    @property
    def strip_always(self) -> bool:
        return self.manifest.get("strip") == "always"

    @property
    def tokenizer(self) -> str | None:
        """The tokenizer the set pins for local models (stargate.tokenization), or None: the model's own."""
        return self.manifest.get("tokenizer")

    @property
    def sft_labels(self) -> str:
        """How SFT labels are placed: "char_offsets" (every assistant character's tokens, the project's) or
        "prefix_length" (the original's `_tokenize_fn`: positions between the token lengths of rendered
        prefixes, so a token merging "]" with an assistant turn's first character is left out)."""
        return self.manifest.get("sft_labels", "char_offsets")

    @property
    def keeps_blank_gold(self) -> bool:
        """A blank gold response is kept and scored over no token (log p 0), as the original did (paper_v1)."""
        return self.manifest.get("blank_gold") == "keep"

    @property
    def vllm_text(self) -> bool:
        """Local-model prompts go as text to vLLM 0.3.3 (double BOS, round trip, outputs with their space)."""
        return self.manifest.get("generation_io") == "vllm_0.3.3_text"

    def _send(self, text: str, round_trip: bool = False) -> str:
        return VllmTextPrompt(text, round_trip=round_trip) if self.vllm_text else text

    def render_chat(self, messages: list[dict]) -> str:
        """Messages rendered with the set's own chat template, as transformers' apply_chat_template does."""
        if self.chat_template is None:
            raise StargateError(f"prompt set '{self.name}' ships no chat template (manifest key chat_template)")
        return _render_template(self.chat_template, messages)

    def _local_chat(self, messages: list[dict]) -> list[dict] | str:
        """A chat for a local model: as-is (the backend applies the model's template), or, for a set that
        ships its template, rendered here, and for vllm_0.3.3_text sent as text after a decode round trip."""
        if self.chat_template is None:
            return messages
        return self._send(self.render_chat(messages), round_trip=True)

    def fill(self, key: str, **fields: str) -> str:
        return self.texts[key].format(**fields)

    def _clean(self, text: str) -> str:
        return text.strip() if self.strip_always else text

    # ------------------------------------------------------ the paper's strings
    def _paper_conversation(self, name: str, task: str, turns: list[Turn]) -> str:
        """The original's running conversation string (spec §3.1): it is what the scorer slices."""
        out = "<s>[INST]" + self.fill("questioner", name=name, task=task) + "[/INST]"
        for turn in turns:
            if turn["role"] == "questioner":
                out += "\n" + turn["text"] + "</s>"
            else:
                out += "\n[INST] " + turn["text"] + " [/INST]"
        return out

    @staticmethod
    def _paper_history(conversation: str) -> str:
        """`extract_history` of the original roleplayer step (prompts file §5.3), literally."""
        h = conversation[conversation.find("[/INST]") :]
        h = h.replace("</s>", "").replace("[/INST]\n", "\nAI Assistant: ").replace("[INST]", "You: ")
        return h.strip()

    # -------------------------------------------------------------- the roles
    def questioner(self, name: str, task: str, turns: list[Turn], finetuned: bool) -> list[dict] | str:
        """Input for the Questioner's next question, given the turns so far."""
        if self.raw:
            return self._send(self._paper_conversation(name, task, turns))
        name, task = name.strip(), task.strip()
        with_instruction = self.manifest.get("questioner_instruction") == "always" or not finetuned
        first = self.fill("questioner", name=name, task=task) if with_instruction else f"My name is {name}.\n\n{task}"
        return [{"role": "user", "content": first}] + _alternate(turns, self._clean)

    def roleplayer(self, persona: str, task: str, name: str, turns: list[Turn]) -> list[dict] | str:
        """Input for the Roleplayer's answer to the latest question."""
        if self.raw:
            history = self._paper_history(self._paper_conversation(name, task, turns))
            body = self.fill("roleplayer", persona=persona, task=task, history=history)
            return self._send("<s>[INST] " + self.texts["roleplayer_system"] + "\n\n" + body + "[/INST]")
        lines = []
        for turn in turns:
            who = "AI Assistant" if turn["role"] == "questioner" else "You"
            lines.append(f"{who}: {turn['text'].strip()}")
        body = self.fill("roleplayer", persona=persona.strip(), task=task.strip(), history="\n".join(lines))
        return [{"role": "system", "content": self.texts["roleplayer_system"]}, {"role": "user", "content": body}]

    def oracle(self, persona: str, task: str) -> list[dict]:
        user = self.fill("oracle_user", persona=self._clean(persona), task=task.strip())
        return [{"role": "system", "content": self.texts["oracle_system"]}, {"role": "user", "content": user}]

    def persona_generation(self, seed_a: str, seed_b: str) -> list[dict]:
        user = self.texts["persona_user"] + "\n\n" + seed_a + "\n\n" + seed_b + "\n\n"
        return [{"role": "system", "content": self.texts["persona_system"]}, {"role": "user", "content": user}]

    def name_extraction(self, persona: str) -> list[dict]:
        return [{"role": "user", "content": self.fill("name_extraction", persona=persona.strip())}]

    def judge(self, persona: str, task: str, response_a: str, response_b: str) -> list[dict]:
        user = self.fill(
            "judge_user", persona=persona, task=task.strip(), response_A=response_a, response_B=response_b
        )
        return [{"role": "system", "content": self.texts["judge_system"]}, {"role": "user", "content": user}]

    def parse_verdict(self, text: str) -> str | None:
        """'a', 'b', or None (tie / unparsable: dropped from the win rate, spec §6.2)."""
        anchor = "Final Response:"
        if self.manifest.get("verdict") == "paper":
            v = text[text.find(anchor) + len(anchor) :].lower().strip() if anchor in text else ""
            return v if v in ("a", "b") else None
        m = re.search(r"Final Response:\s*[\"'*<\[(]*\s*([AB])\b", text, re.IGNORECASE)
        return m.group(1).lower() if m else None

    # ------------------------------------------------------------ analyses
    def analysis_text(self, key: str) -> str:
        if key not in ANALYSIS_TEXTS:
            raise StargateError(f"unknown analysis template '{key}' (known: {', '.join(ANALYSIS_TEXTS)})")
        return template_file(self.name, self.manifest, key).read_text(encoding="utf-8")

    def specificity(self, task: str) -> list[dict]:
        """The query-specificity rating of a task (prompts file §11): RATING_SYS_PROMPTS[0] and
        RATING_PROMPTS[0] with the stripped task, as gpt-4-general-vs-specific/rate-specificity.py sent them."""
        user = self.analysis_text("specificity_user").format(task=task.strip())
        return [
            {"role": "system", "content": self.analysis_text("specificity_system")},
            {"role": "user", "content": user},
        ]

    def parse_specificity(self, text: str | None) -> int | None:
        """The 1-6 rating. paper: `int(text after 'Final Response:')`, 0 when that fails (a refused or
        unparsable reply then counts as "specific", as it did); robust: the first digit 1-6 after the anchor,
        None (unrated) without one."""
        text = text or ""
        anchor = "Final Response:"
        if self.manifest.get("verdict") == "paper":
            try:
                return int(text[text.find(anchor) + len(anchor) :].strip())
            except ValueError:
                return 0
        m = re.search(r"Final Response:\s*[\"'*<\[(]*\s*([1-6])\b", text, re.IGNORECASE)
        return int(m.group(1)) if m else None

    @staticmethod
    def specificity_label(rating: int | None) -> str | None:
        return None if rating is None else ("specific" if rating <= SPECIFIC_MAX else "general")

    # ------------------------------------------------- answers and training data
    def _answer_messages(self, name: str, task: str, turns: list[Turn], first_prefix: str) -> list[dict]:
        """Spec §3.5-§3.6 / prompts §7-§9: Q/A turns, the task repeated after the last answer."""
        clean = (lambda s: s.strip()) if (self.strip_always or self.raw) else (lambda s: s)
        msgs = [{"role": "user", "content": first_prefix + f"My name is {name}.\n\n{task}"}]
        msgs += _alternate(turns, clean)
        if msgs[-1]["role"] != "user":
            raise StargateError("a finished conversation must end with a roleplayer turn")
        msgs[-1] = {"role": "user", "content": msgs[-1]["content"].strip() + "\n\n" + task}
        return msgs

    def regularizer(self, name: str, task: str, turns: list[Turn]) -> list[dict] | str:
        """m_t's final personalised answer after its kept conversation (the paper's regularizer)."""
        msgs = self._answer_messages(name.strip(), task.strip(), turns, self.texts["regularizer"] + "\n\n")
        return self._local_chat(msgs)

    def winrate_answer(self, name: str, task: str, turns: list[Turn]) -> list[dict] | str:
        """Zero-shot win-rate answer prompt (no instruction). The original did not strip name/task here."""
        if not self.strip_always:
            return self._local_chat(self._answer_messages(name, task, turns, ""))
        return self._local_chat(self._answer_messages(name.strip(), task.strip(), turns, ""))

    def sft_messages(self, name: str, task: str, turns: list[Turn], final: str) -> list[dict]:
        """The original appended m_t's stored answer as-is (spec §3.6), i.e. with vLLM's leading space."""
        msgs = self._answer_messages(name.strip(), task.strip(), turns, "")
        return msgs + [{"role": "assistant", "content": final if self.raw else final.strip()}]

    # ------------------------------------------------------------------ scoring
    def scoring_context(
        self, condition: str, name: str, persona: str, task: str, turns: list[Turn]
    ) -> list[dict] | str:
        """Context whose continuation is the gold response, per log-prob condition (prompts §6)."""
        name, task = name.strip(), task.strip()
        with_persona = condition in ("pos-control-1", "pos-control-2")
        with_conv = condition in CONDITIONS_PER_ITERATION
        if self.raw:  # likelihood-pos-control-{1,2}.py: f"...about me:\n\n{persona.strip()}\n\n..."
            persona = persona.strip()
        intro = f"My name is {name}." + (f" Here is some information about me:\n\n{persona}" if with_persona else "")
        if condition not in CONDITIONS:
            raise StargateError(f"unknown log-prob condition '{condition}'")
        if self.raw:
            prompt = "<s>[INST]" + intro + "\n\n" + task + "[/INST]"
            if with_conv:
                conversation = self._paper_conversation(name, task, turns)
                conv = conversation[conversation.find("[/INST]") + 7 : conversation.rfind("[/INST]")].strip()
                prompt += conv + "\n\n" + task + "[/INST]"
            return PromptLengthContext(prompt) if self.manifest.get("score_span") == "prompt_length" else prompt
        msgs = [{"role": "user", "content": intro + "\n\n" + task}]
        if with_conv:
            msgs += _alternate(turns, str.strip)
            msgs[-1] = {"role": "user", "content": msgs[-1]["content"] + "\n\n" + task}
        return msgs


def _render_template(template: str, messages: list[dict]) -> str:
    """transformers' chat-template rendering (jinja2 sandbox, trim_blocks, lstrip_blocks, raise_exception)."""
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(template).render(
            messages=messages, bos_token="<s>", eos_token="</s>", add_generation_prompt=False
        )
    except TemplateError as exc:
        raise StargateError(f"the prompt set's chat template refused the messages: {exc}") from exc


def _alternate(turns: list[Turn], clean) -> list[dict]:
    role = {"questioner": "assistant", "roleplayer": "user"}
    return [{"role": role[t["role"]], "content": clean(t["text"])} for t in turns]
