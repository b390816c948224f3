"""InfillOutcome -> llama-server's and OpenAI's response bodies, stop strings, and the text a stream may send
(stop_type and finish_reason: docs/serving.md, "POST /infill")."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from coda_engine.jobs import InfillOutcome
from coda_lsp.serve.prompt import REPLACEMENT


def dumps(value: Any) -> str:
    """Compact JSON on one line: llama.vim drops a reply unless it matches `"content":"` with no space, and
    classic Vim reads replies line by line (llama-server dumps with nlohmann's dump(-1) likewise)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Completion:
    """One row's answer after the stop strings."""

    text: str
    stop_type: str        # none | eos | limit | word
    stopping_word: str
    tokens_predicted: int

    @property
    def finish_reason(self) -> str:
        return "length" if self.stop_type == "limit" else "stop"


def completions(outcome: InfillOutcome, stop: Sequence[str], span: int, rows: int) -> list[Completion]:
    """One Completion per row asked for; a warm-up's outcome may hold no rows at all (nothing was decoded)."""
    missing = rows - len(outcome.texts)
    texts = tuple(outcome.texts) + ("",) * missing
    finished = tuple(outcome.finished) + (True,) * missing
    predicted = tuple(outcome.tokens_predicted) + (0,) * missing
    result = []
    for text, finished_row, tokens in zip(texts, finished, predicted):
        cut, word = cut_at_stop(text, stop)
        stop_type = "word" if word else ("limit" if not finished_row or tokens >= span else "eos")
        result.append(Completion(cut, stop_type, word, tokens))
    return result


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, str]:
    """`text` up to the earliest stop string, and that string ("" when none occurs)."""
    best, word = len(text), ""
    for candidate in stop:
        at = text.find(candidate)
        if at != -1 and (at < best or (at == best and not word)):
            best, word = at, candidate
    return text[:best], word


# ---- llama-server --------------------------------------------------------------------------------------------

def native_result(index: int, completion: Completion, outcome: InfillOutcome, *, model: str, id_slot: int,
                  truncated: bool) -> dict[str, Any]:
    """One completion in llama-server's non-OAI shape (server-task.cpp `to_json_non_oaicompat`), keys in its order.
    timings: "prompt" is the first, whole-canvas pass; "predicted" the denoising passes after it."""
    predicted = completion.tokens_predicted
    return {
        "index": index, "content": completion.text, "tokens": [], "id_slot": id_slot, "stop": True,
        "model": model, "tokens_predicted": predicted, "tokens_evaluated": outcome.tokens_evaluated,
        "has_new_line": "\n" in completion.text, "truncated": truncated, "stop_type": completion.stop_type,
        "stopping_word": completion.stopping_word, "tokens_cached": outcome.tokens_cached,
        "timings": {
            "cache_n": outcome.tokens_cached,
            "prompt_n": outcome.tokens_evaluated, "prompt_ms": round(outcome.prompt_ms, 3),
            **_rates("prompt", outcome.tokens_evaluated, outcome.prompt_ms),
            "predicted_n": predicted, "predicted_ms": round(outcome.predicted_ms, 3),
            **_rates("predicted", predicted, outcome.predicted_ms),
        },
    }


def _rates(name: str, tokens: int, ms: float) -> dict[str, float]:
    return {f"{name}_per_token_ms": round(ms / tokens, 3) if tokens else 0.0,
            f"{name}_per_second": round(tokens * 1000.0 / ms, 3) if ms > 0 else 0.0}


def select_fields(result: dict[str, Any], fields: Sequence[str] | None) -> dict[str, Any]:
    """llama-server's response_fields (`json_get_nested_values`): each `a/b` path that exists is copied to a
    top-level key named "a/b"; paths that match nothing are dropped (llama.vim's warm-up asks for [""] and gets
    {})."""
    if fields is None:
        return result
    selected = {}
    for path in fields:
        value: Any = result
        for key in path.split("/"):
            if not isinstance(value, dict) or key not in value:
                break
            value = value[key]
        else:
            selected[path] = value
    return selected


# ---- OpenAI ------------------------------------------------------------------------------------------------------

def openai_result(completion_id: str, created: int, model: str, answers: Sequence[Completion],
                  prompt_tokens: int) -> dict[str, Any]:
    completion_tokens = sum(answer.tokens_predicted for answer in answers)
    return {
        "id": completion_id, "object": "text_completion", "created": created, "model": model,
        "choices": [{"index": index, "text": answer.text, "logprobs": None, "finish_reason": answer.finish_reason}
                    for index, answer in enumerate(answers)],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def openai_chunk(completion_id: str, created: int, model: str, index: int, text: str,
                 finish_reason: str | None) -> dict[str, Any]:
    return {"id": completion_id, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}]}


# ---- streams -----------------------------------------------------------------------------------------------------

class StreamText:
    """What a stream may send of each row's decided text. Clients append deltas, so only text that can no longer
    change goes out: a trailing replacement character may be half of a UTF-8 character whose next token is not
    decided yet, text from a stop string on is never sent, and a tail that could begin a stop string waits."""

    def __init__(self, num_rows: int, stop: Sequence[str]) -> None:
        self.sent = [""] * num_rows
        self.stop = tuple(stop)

    def delta(self, row: int, decided: str) -> str:
        """The new text of `row` to send now, given its decided text so far."""
        stable, word = cut_at_stop(decided.rstrip(REPLACEMENT), self.stop)
        if not word:
            stable = stable[:len(stable) - self._held_back(stable)]
        return self._advance(row, stable)

    def rest(self, row: int, final: str) -> str:
        """The final text's part not yet sent (the whole answer, once decoding ended)."""
        return self._advance(row, final)

    def _advance(self, row: int, text: str) -> str:
        sent = self.sent[row]
        if len(text) <= len(sent) or not text.startswith(sent):
            return ""
        self.sent[row] = text
        return text[len(sent):]

    def _held_back(self, text: str) -> int:
        """Length of the longest end of `text` that is the start of a stop string."""
        longest = 0
        for word in self.stop:
            for size in range(min(len(word) - 1, len(text)), longest, -1):
                if text.endswith(word[:size]):
                    longest = size
                    break
        return longest
