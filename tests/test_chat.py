"""`stargate chat` driven through standard input (issue 13): the questions, your answers, the final answer."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from conftest import scripted_role_json


def chat(*args: str, stdin: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "stargate", "chat", *args], input=stdin, capture_output=True, text=True, env=env,
        timeout=300,
    )  # fmt: skip


def test_chat_asks_reads_answers_and_answers_with_them():
    # scripted Questioner: a fixed first question, then one that quotes your answer; the final-answer prompt
    # (the regularizer's instruction) gets an answer quoting its last message
    role = scripted_role_json(
        reply="What is your budget?",
        rules=[
            {"match": "highly personalized", "reply": "FINAL using: {last}"},
            {"match": "50 euros", "reply": "Q: did you say '{last}'?"},
        ],
    )
    stdin = "Ana\nPlan a weekend trip.\n50 euros\nI love the sea\n"
    r = chat("bot", "--role", role, "--turns", "2", "--finetuned", "no", stdin=stdin)
    assert r.returncode == 0, r.stderr
    said = re.findall(r"Assistant(?: \(answer\))?: (.*)", r.stdout)
    assert said[:2] == ["What is your budget?", "Q: did you say '50 euros'?"]  # the 2nd question sees answer 1
    # the final answer's prompt ends with your last answer and the task repeated (the regularizer format)
    assert "Assistant (answer): FINAL using: I love the sea\n\nPlan a weekend trip." in r.stdout
    assert r.stdout.count("Assistant") == 3


def test_chat_stops_asking_on_an_empty_answer_and_uses_the_trained_format():
    role = scripted_role_json(reply="{last}")
    r = chat("bot", "--role", role, "--name", "Ana", "--task", "Cook dinner.", "--finetuned", "yes", stdin="Pasta\n\n")
    assert r.returncode == 0, r.stderr
    asked = re.findall(r"Assistant: .*", r.stdout)
    # a fine-tuned Questioner sees "My name is X.\n\n{task}" with no instruction
    assert len(asked) == 2 and asked[0].startswith("Assistant: My name is Ana.")


def test_chat_with_a_tiny_local_model(tiny_model_dir):
    role = json.dumps({"backend": "hf", "options": {"dtype": "float32"}, "sampling": {"max_tokens": 6, "seed": 1}})
    r = chat(str(tiny_model_dir), "--role", role, "--turns", "1", stdin="Ana\nPlan a trip.\nThe sea.\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("Assistant:") == 1 and "Assistant (answer):" in r.stdout


def test_chat_bad_role_is_a_clear_error():
    r = chat("bot", "--role", "{not json", stdin="")
    assert r.returncode == 2 and "--role" in r.stderr
