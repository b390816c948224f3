"""SFT examples from JSONL: prompt/response pairs or chat messages, rendered with the tokenizer's chat template.

An example is a fixed-length row: the rendered conversation right-padded with <|endoftext|>, and a condition
mask that is True up to and including the last `<|im_start|>assistant` (CoDA's src_mask). The response and its
pad tail are the part the model learns to write, so it learns to end early by writing pad.
"""

from __future__ import annotations

import numpy as np

from coda_training.data.tokenizer import TokenizerInfo, render_chat
from coda_training.errors import TrainingError

ASSISTANT_MARKER = "<|im_start|>assistant"


def messages_of(record: dict, where: str) -> list[dict]:
    """{"prompt", "response"} or {"messages": [{"role", "content"}, ...]} ending with an assistant turn."""
    if "messages" in record:
        messages = record["messages"]
        ok = isinstance(messages, list) and messages and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages)
        if not ok or messages[-1]["role"] != "assistant":
            raise TrainingError(f"{where}: 'messages' must be a list of {{role, content}} ending with an "
                                f"assistant turn")
        return messages
    if isinstance(record.get("prompt"), str) and isinstance(record.get("response"), str):
        return [{"role": "user", "content": record["prompt"]}, {"role": "assistant", "content": record["response"]}]
    raise TrainingError(f"{where}: expected keys 'prompt' and 'response' (strings) or 'messages'")


def condition_length(ids: list[int], marker: list[int]) -> int:
    """Index just past the last occurrence of the assistant marker; 0 if absent."""
    for start in range(len(ids) - len(marker), -1, -1):
        if ids[start:start + len(marker)] == marker:
            return start + len(marker)
    return 0


def sft_example(info: TokenizerInfo, messages: list[dict], seq_len: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(input_ids [L] uint32, condition [L] bool), or None when the conversation is longer than L (CoDA drops
    those rather than cutting an answer in half)."""
    ids = info.encode(render_chat(info, messages, add_generation_prompt=False))
    if len(ids) > seq_len:
        return None
    cond_len = condition_length(ids, info.encode(ASSISTANT_MARKER))
    row = np.full(seq_len, info.pad_id, np.uint32)
    row[:len(ids)] = ids
    condition = np.arange(seq_len) < cond_len
    return row, condition
