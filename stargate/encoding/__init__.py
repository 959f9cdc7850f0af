"""How model inputs become token ids and outputs become text, the same for every user: the local backends
(hf, vllm) feed and score with it, the prompt sets mark the paper's text prompts with it, SFT's loss mask
finds the assistant turns with it.

* `spans`: a prompt's token ids (chat template or raw string), a scoring target's token range, every
  assistant turn's character span in a chat;
* `vllm033`: how the original's vLLM 0.3.3 encoded text prompts and decoded completions (the paper set).

Pure functions over a tokenizer: nothing here imports a backend, so a stage that only tokenizes (sft_data,
train) does not carry the backends' code in its fingerprint (stargate/fingerprint.py).
"""
