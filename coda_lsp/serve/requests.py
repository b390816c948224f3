"""Request bodies -> CompletionRequest: llama-server's /infill and OpenAI's /v1/completions, checked field by field.

Every problem is an ApiError 400 that names the field; fields neither API defines, or that we do not use
(top_k, samplers, n_indent, ...), are ignored, as llama-server ignores what it does not know."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from coda_lsp.serve.errors import bad_field
from coda_lsp.serve.settings import ServeSettings

# Qwen's FIM tokens (ids 151659-151661 in CoDA's vocabulary). Clients that render their own FIM template into an
# OpenAI `prompt` (Continue's openai provider, llama.vscode's use_openai_endpoint) send
# `<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>`; the part before the prefix (Continue's
# multi-file header) stays in front of it.
FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE = "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"


@dataclass(frozen=True)
class CompletionRequest:
    """One completion request in the terms both endpoints share."""

    prefix: str                     # the text before the span (llama-server's input_prefix + prompt)
    suffix: str
    max_tokens: int                 # the span after the cap; 0 = only compute the canvas's cache
    temperature: float
    num_completions: int            # after the cap
    stop: tuple[str, ...] = ()
    seed: int | None = None
    extra: tuple[Mapping[str, Any], ...] = ()   # input_extra chunks, oldest first
    cache_prompt: bool = True
    deadline_ms: float | None = None            # t_max_predict_ms; None = no deadline
    response_fields: tuple[str, ...] | None = None
    stream: bool = False
    id_slot: int = -1
    model: str | None = None                    # OpenAI's, echoed back

    def temperatures(self, settings: ServeSettings) -> tuple[float, ...]:
        """One per row. Rows after the first sample at candidate_temperature when the request asks for greedy
        decoding: n greedy rows of one canvas would all be the same text."""
        others = self.temperature if self.temperature > 0 else settings.candidate_temperature
        return (self.temperature,) + (others,) * (self.num_completions - 1)


def parse_infill(body: Mapping[str, Any], settings: ServeSettings) -> CompletionRequest:
    """llama-server's /infill (LC README "/infill", server-task.cpp `params_from_json_cmpl`)."""
    prefix, suffix = _required_string(body, "input_prefix"), _required_string(body, "input_suffix")
    n_predict = _field(body, "n_predict", "an integer", -1)
    deadline_ms = _field(body, "t_max_predict_ms", "a number", 0.0)
    return CompletionRequest(
        prefix=prefix + _field(body, "prompt", "a string", ""), suffix=suffix,
        # -1 (llama-server's "unbounded") and any other negative number: our default span
        max_tokens=settings.max_tokens if n_predict < 0 else min(n_predict, settings.max_tokens),
        temperature=max(0.0, _field(body, "temperature", "a number", 0.0)),
        num_completions=_count(body, "n" if body.get("n_cmpl") is None else "n_cmpl", settings),
        stop=_stop(body, "stop"),
        seed=_seed(body),
        extra=_extra(body),
        cache_prompt=_field(body, "cache_prompt", "true or false", True),
        deadline_ms=deadline_ms if deadline_ms > 0 else None,  # 0 and -1 turn it off (llama-server)
        response_fields=_response_fields(body),
        stream=_field(body, "stream", "true or false", False),
        id_slot=_field(body, "id_slot", "an integer", -1),
    )


def parse_openai(body: Mapping[str, Any], settings: ServeSettings) -> CompletionRequest:
    """OpenAI's legacy completions (openai-python `completion_create_params.py`), with `suffix` for FIM."""
    prompt = _openai_prompt(body)
    suffix = _field(body, "suffix", "a string", "")
    if not suffix and FIM_PREFIX in prompt and FIM_SUFFIX in prompt and prompt.endswith(FIM_MIDDLE):
        # `{head}<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>` -> (head + prefix, suffix)
        head, _, rest = prompt.partition(FIM_PREFIX)
        prefix, _, fim_suffix = rest.partition(FIM_SUFFIX)
        prompt, suffix = head + prefix, fim_suffix[:-len(FIM_MIDDLE)]
    max_tokens = _field(body, "max_tokens", "an integer", settings.openai_max_tokens)
    if max_tokens < 0:
        raise bad_field("max_tokens", f"must be >= 0, got {max_tokens}")
    return CompletionRequest(
        prefix=prompt, suffix=suffix, max_tokens=min(max_tokens, settings.max_tokens),
        temperature=max(0.0, _field(body, "temperature", "a number", 0.0)),
        num_completions=_count(body, "n", settings),
        stop=_stop(body, "stop"), seed=_seed(body), stream=_field(body, "stream", "true or false", False),
        model=_field(body, "model", "a string", "") or None,
    )


def _openai_prompt(body: Mapping[str, Any]) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        return prompt[0]
    if not isinstance(prompt, str):
        raise bad_field("prompt", "must be a string or a list of one string"
                        + ("" if "prompt" in body else " (it is missing)"))
    return prompt


# ---- one field each --------------------------------------------------------------------------------------------

# What a field may be, by the words its error uses; booleans are not numbers.
_KINDS: dict[str, Callable[[Any], bool]] = {
    "a string": lambda value: isinstance(value, str),
    "an integer": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "a number": lambda value: isinstance(value, (int, float)) and not isinstance(value, bool),
    "true or false": lambda value: isinstance(value, bool),
}


def _field(body: Mapping[str, Any], name: str, kind: str, default: Any) -> Any:
    """`body[name]`, or `default` when it is absent or null; a 400 when it is not `kind`."""
    value = body.get(name)
    if value is None:
        return default
    # JSON has one number type: 128.0 is 128, but 1.5 tokens is not a count
    if kind == "an integer" and isinstance(value, float) and value.is_integer():
        value = int(value)
    if not _KINDS[kind](value):
        raise bad_field(name, f"must be {kind}, got {_json_type(value)}")
    return float(value) if kind == "a number" else value


def _required_string(body: Mapping[str, Any], name: str) -> str:
    value = _field(body, name, "a string", None)
    if value is None:
        raise bad_field(name, "is required (a string)")
    return value


def _count(body: Mapping[str, Any], name: str, settings: ServeSettings) -> int:
    """n / n_cmpl: at least 1, capped by max_completions (each one is a row of the shared batch)."""
    value = _field(body, name, "an integer", 1)
    if value < 1:
        raise bad_field(name, f"must be >= 1, got {value}")
    return min(value, settings.max_completions)


def _stop(body: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = body.get(name)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value else ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise bad_field(name, f"must be a string or a list of strings, got {_json_type(value)}")
    return tuple(item for item in value if item)


def _seed(body: Mapping[str, Any]) -> int | None:
    seed = _field(body, "seed", "an integer", None)
    return seed if seed is not None and seed >= 0 else None  # llama-server: -1 = random


def _extra(body: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    """input_extra: [{filename, text}]; filename defaults to "tmp" as in llama-server, other keys are ignored."""
    value = body.get("input_extra")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise bad_field("input_extra", f"must be a list of {{filename, text}} objects, got {_json_type(value)}")
    chunks = []
    for index, chunk in enumerate(value):
        where = f"input_extra[{index}]"
        if not isinstance(chunk, dict):
            raise bad_field(where, f"must be a {{filename, text}} object, got {_json_type(chunk)}")
        if not isinstance(chunk.get("text"), str):
            raise bad_field(f"{where}.text", "is required (a string)")
        filename = chunk.get("filename", "tmp")
        if not isinstance(filename, str):
            raise bad_field(f"{where}.filename", f"must be a string, got {_json_type(filename)}")
        chunks.append({"filename": filename, "text": chunk["text"]})
    return tuple(chunks)


def _response_fields(body: Mapping[str, Any]) -> tuple[str, ...] | None:
    value = body.get("response_fields")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise bad_field("response_fields", f"must be a list of strings, got {_json_type(value)}")
    return tuple(value) if value else None  # [] keeps every field, as in llama-server


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)
