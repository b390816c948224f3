"""The HTTP layer's pure parts: stop strings, what a stream may send, response_fields, the room split, FIM-token
prompts."""

from __future__ import annotations

import pytest

from coda_lsp.serve.prompt import split_room
from coda_lsp.serve.requests import parse_openai
from coda_lsp.serve.responses import StreamText, cut_at_stop, select_fields
from coda_lsp.serve.settings import ServeSettings


@pytest.mark.parametrize(("text", "stop", "expected"), [
    ("a + b\nc", ["\n"], ("a + b", "\n")),
    ("a + b\nc", ["c", "+"], ("a ", "+")),       # the earliest occurrence wins, not the first listed
    ("abc", ["x"], ("abc", "")),
    ("abc", [], ("abc", "")),
])
def test_cut_at_stop(text: str, stop: list[str], expected: tuple[str, str]) -> None:
    assert cut_at_stop(text, stop) == expected


def test_a_stream_sends_only_text_that_cannot_change() -> None:
    stream = StreamText(1, ["\n\n"])
    assert stream.delta(0, "def") == "def"
    assert stream.delta(0, "def f\ufffd") == " f"          # half a character waits for its other half
    assert stream.delta(0, "def fé(x):\n") == "é(x):"      # a newline could start the stop string
    assert stream.delta(0, "def fé(x):\n  y") == "\n  y"
    assert stream.delta(0, "def fé(x):\n  y\n\nz") == ""    # the stop string and what follows are never sent
    assert stream.rest(0, "def fé(x):\n  y") == ""
    other = StreamText(2, [])
    assert (other.delta(1, "ab"), other.rest(0, "xy"), other.rest(1, "abc")) == ("ab", "xy", "c")


def test_response_fields_flatten_paths() -> None:
    result = {"content": "x", "timings": {"prompt_n": 3, "predicted_ms": 1.5}, "truncated": False}
    assert select_fields(result, ["content", "timings/prompt_n", "timings/nothing", "truncated"]) == {
        "content": "x", "timings/prompt_n": 3, "truncated": False}
    assert select_fields(result, [""]) == {}
    assert select_fields(result, None) is result


@pytest.mark.parametrize(("room", "num_prefix", "num_suffix", "expected"), [
    (100, 500, 500, (75, 25)),
    (100, 500, 10, (90, 10)),    # a short suffix leaves its share to the prefix
    (100, 30, 500, (30, 70)),    # and a short prefix to the suffix
])
def test_split_room(room: int, num_prefix: int, num_suffix: int, expected: tuple[int, int]) -> None:
    assert split_room(room, num_prefix, num_suffix) == expected


def test_openai_prompt_with_fim_tokens_keeps_what_comes_before_them() -> None:
    request = parse_openai({"prompt": "<|file_sep|>a.py\n<|fim_prefix|>x = <|fim_suffix|>\n<|fim_middle|>"},
                           ServeSettings())
    assert (request.prefix, request.suffix, request.max_tokens) == ("<|file_sep|>a.py\nx = ", "\n", 16)
    given = parse_openai({"prompt": "<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>", "suffix": "s"}, ServeSettings())
    assert given.suffix == "s"  # an explicit suffix wins; the prompt is taken as it is
