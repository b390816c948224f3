"""The HTTP server end to end: the real uvicorn on a loopback port, a real backend on the tiny checkpoint, and the
requests real clients send (llama.vim's JSON written from its documented shape, the `openai` package, SSE read
line by line as Tabby and Continue read it)."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx
import openai
import pytest

from tests.serve.conftest import MAX_POSITIONS, RunningServer

# llama.vim's FIM request (llama.vim `llama#fim`, shared/research/serving.md §1.4), example values.
LLAMA_VIM_FIM: dict[str, Any] = {
    "id_slot": 0, "input_prefix": "def add(a, b):\n", "input_suffix": "\n\nprint(add(1, 2))\n",
    "input_extra": [{"text": "import math\n\ndef square(x):\n    return x * x\n", "time": [1738000000, 12345],
                     "filename": "util.py"}],
    "prompt": "    return ", "n_predict": 128, "stop": [], "n_indent": 4, "top_k": 40, "top_p": 0.90,
    "samplers": ["top_k", "top_p", "infill"], "stream": False, "cache_prompt": True, "t_max_prompt_ms": 500,
    "t_max_predict_ms": 5000, "model": "",
    "response_fields": ["content", "timings/prompt_n", "timings/prompt_ms", "timings/prompt_per_token_ms",
                        "timings/prompt_per_second", "timings/predicted_n", "timings/predicted_ms",
                        "timings/predicted_per_token_ms", "timings/predicted_per_second", "truncated",
                        "tokens_cached"],
}
# Its warm-up when a chunk enters the ring buffer: everything empty but input_extra, nothing to predict.
LLAMA_VIM_WARMUP: dict[str, Any] = {
    "id_slot": 0, "input_prefix": "", "input_suffix": "", "input_extra": LLAMA_VIM_FIM["input_extra"], "prompt": "",
    "n_predict": 0, "temperature": 0.0, "samplers": [], "stream": False, "cache_prompt": True,
    "t_max_prompt_ms": 1, "t_max_predict_ms": 1, "response_fields": [""],
}
PLAIN = {"input_prefix": "def add(a, b):\n    return ", "input_suffix": "\n\nprint(add(1, 2))\n"}
RESULT_KEYS = ["index", "content", "tokens", "id_slot", "stop", "model", "tokens_predicted", "tokens_evaluated",
               "has_new_line", "truncated", "stop_type", "stopping_word", "tokens_cached", "timings"]
TIMING_KEYS = ["cache_n", "prompt_n", "prompt_ms", "prompt_per_token_ms", "prompt_per_second", "predicted_n",
               "predicted_ms", "predicted_per_token_ms", "predicted_per_second"]


def post(server: RunningServer, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(server.url + path, json=body, **{"timeout": 30, **kwargs})


def sse_events(raw: str) -> list[str]:
    """The `data:` payloads of an SSE body, each checked as Tabby checks them: JSON, or the [DONE] marker."""
    payloads = []
    for line in raw.split("\n"):
        if not line:
            continue
        assert line.startswith("data: "), line
        payload = line[len("data: "):]
        if payload != "[DONE]":
            json.loads(payload)
        payloads.append(payload)
    return payloads


# ---- llama.vim and llama-server's /infill ------------------------------------------------------------------------

def test_llama_vim_fim_request_gets_one_compact_line_with_flattened_fields(server: RunningServer) -> None:
    reply = post(server, "/infill", LLAMA_VIM_FIM, headers={"Authorization": "Bearer"})  # llama.vim: `Bearer ` + its empty key
    assert reply.status_code == 200
    raw = reply.text
    # llama.vim's own checks on the raw reply, and classic Vim's line-based read
    assert re.match(r"^\s*{", raw) and re.search(r'"content"\s*:"', raw) and '"content":"' in raw
    assert "\n" not in raw and ": " not in raw.replace(reply.json()["content"], "")
    body = reply.json()
    assert list(body) == LLAMA_VIM_FIM["response_fields"]
    assert body["timings/predicted_n"] >= 1 and body["truncated"] is False
    job = server.backend.jobs[-1]
    # input_extra went before the prefix as cross-file text; prompt was appended to the prefix
    assert "def square(x):" in job.prefix and "util.py" in job.prefix
    assert job.prefix.endswith("def add(a, b):\n    return ") and job.suffix == "\n\nprint(add(1, 2))\n"
    assert job.max_tokens == 12 and job.temperatures == (0.0,) and job.client == "|127.0.0.1|0"


def test_llama_vim_warmup_gets_an_empty_object(server: RunningServer) -> None:
    reply = post(server, "/infill", LLAMA_VIM_WARMUP)
    assert reply.status_code == 200 and reply.text == "{}"
    job = server.backend.jobs[-1]
    assert job.max_tokens == 0 and job.deadline is None and "def square(x):" in job.prefix


def test_plain_infill_has_llama_servers_fields(server: RunningServer) -> None:
    body = post(server, "/infill", PLAIN).json()
    assert list(body) == RESULT_KEYS and list(body["timings"]) == TIMING_KEYS
    assert body["stop"] is True and body["tokens"] == [] and body["model"] == server.backend.model_name
    assert body["stop_type"] in ("eos", "limit") and body["stopping_word"] == ""
    assert body["has_new_line"] == ("\n" in body["content"])
    assert body["tokens_evaluated"] > 0 and body["timings"]["prompt_n"] == body["tokens_evaluated"]
    assert body["timings"]["predicted_ms"] > 0 and body["timings"]["predicted_per_second"] > 0
    assert body["id_slot"] == 0  # none asked for


def test_several_completions_answer_an_array(server: RunningServer) -> None:
    body = post(server, "/infill", {**PLAIN, "n_cmpl": 3, "n_predict": 6}).json()
    assert isinstance(body, list) and [item["index"] for item in body] == [0, 1, 2]
    # greedy first, the others sampled (n greedy rows would be one text n times)
    assert server.backend.jobs[-1].temperatures == (0.0, 0.8, 0.8)
    capped = post(server, "/infill", {**PLAIN, "n": 50, "n_predict": 2}).json()
    assert len(capped) == 8


def test_stop_strings_cut_the_text(server: RunningServer) -> None:
    full = post(server, "/infill", PLAIN).json()["content"]
    word = full[3:6]
    cut = post(server, "/infill", {**PLAIN, "stop": ["never-there", word]}).json()
    assert cut["content"] == full[:full.index(word)]
    assert (cut["stop_type"], cut["stopping_word"]) == ("word", word)
    assert server.backend.jobs[-1].stop == ("never-there", word)


def test_deadline_answers_the_text_decided_so_far(server: RunningServer) -> None:
    full = post(server, "/infill", PLAIN).json()
    early = post(server, "/infill", {**PLAIN, "t_max_predict_ms": 1}).json()
    assert full["content"].startswith(early["content"])
    assert early["tokens_predicted"] < full["tokens_predicted"]
    assert (early["stop_type"], early["truncated"]) == ("limit", False)


def test_cache_prompt_false_gives_the_job_no_client(server: RunningServer) -> None:
    post(server, "/infill", {**PLAIN, "n_predict": 1, "cache_prompt": False, "id_slot": 3})
    assert server.backend.jobs[-1].client is None
    post(server, "/infill", {**PLAIN, "n_predict": 1, "id_slot": 3})
    assert server.backend.jobs[-1].client == "|127.0.0.1|3"


def test_a_long_prompt_keeps_the_prefix_end_and_the_suffix_start(server: RunningServer) -> None:
    prefix = "".join(f"value_{i} = {i}\n" for i in range(200)) + "total = "
    suffix = "\nprint(total)\n" + "".join(f"print(value_{i})\n" for i in range(200))
    body = post(server, "/infill", {"input_prefix": prefix, "input_suffix": suffix, "n_predict": 4,
                                    "input_extra": [{"filename": "b.py", "text": "import os\n"}]}).json()
    assert body["truncated"] is True
    job = server.backend.jobs[-1]
    tokenizer = server.backend.tokenizer
    num_prefix, num_suffix = len(tokenizer.encode(job.prefix)), len(tokenizer.encode(job.suffix))
    assert num_prefix + num_suffix + 4 <= MAX_POSITIONS
    assert num_prefix >= 2 * num_suffix  # 3/4 and 1/4 of the room
    assert job.prefix.endswith("value_199 = 199\ntotal = ") and job.suffix.startswith("\nprint(total)\nprint(")
    assert "import os" not in job.prefix  # cross-file text is dropped first


def test_cross_file_text_is_dropped_before_the_prefix(server: RunningServer) -> None:
    chunks = [{"filename": f"m{i}.py", "text": "".join(f"def helper_{i}_{j}(): pass\n" for j in range(2))}
              for i in range(6)]
    prefix, tokenizer = "", server.backend.tokenizer
    while len(tokenizer.encode(prefix)) < 210:  # leaves the chunks ~40 tokens, less than extra_tokens (64)
        prefix += f"x_{len(prefix)} = 1\n"
    body = post(server, "/infill", {"input_prefix": prefix, "input_suffix": "", "n_predict": 4,
                                    "input_extra": chunks}).json()
    job = server.backend.jobs[-1]
    assert job.prefix.endswith(prefix) and body["truncated"] is True
    assert "helper_5_0" in job.prefix and "helper_0_0" not in job.prefix  # the newest chunk kept, the oldest not


def test_native_stream_sends_decided_text_then_the_full_result(server: RunningServer) -> None:
    whole = post(server, "/infill", PLAIN).json()
    with httpx.stream("POST", server.url + "/infill", json={**PLAIN, "stream": True}, timeout=30) as reply:
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
        raw = reply.read().decode()
    payloads = sse_events(raw)
    assert "[DONE]" not in payloads  # native streams end without it, as llama-server's
    events = [json.loads(p) for p in payloads]
    assert all(set(e) >= {"content", "stop"} for e in events)  # what Tabby's llama.cpp backend unwraps
    assert [e["stop"] for e in events] == [False] * (len(events) - 1) + [True]
    assert len(events) > 2  # the text arrived in pieces, as it was decided
    assert "".join(e["content"] for e in events) == whole["content"]
    assert list(events[-1]) == RESULT_KEYS


# ---- OpenAI's /v1/completions ------------------------------------------------------------------------------------

def openai_client(server: RunningServer, key: str = "sk-no-key-required") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=30)


def test_openai_client_completes_with_a_suffix(server: RunningServer) -> None:
    native = post(server, "/infill", {**PLAIN, "n_predict": 8}).json()
    result = openai_client(server).completions.create(model="my-model", prompt=PLAIN["input_prefix"],
                                                      suffix=PLAIN["input_suffix"], max_tokens=8)
    assert result.object == "text_completion" and result.id.startswith("cmpl-") and result.model == "my-model"
    choice = result.choices[0]
    assert choice.text == native["content"] and choice.index == 0 and choice.logprobs is None
    assert choice.finish_reason == ("length" if native["stop_type"] == "limit" else "stop")
    assert result.usage is not None and result.usage.completion_tokens == native["tokens_predicted"]
    assert result.usage.prompt_tokens > 0 and result.usage.total_tokens == result.usage.prompt_tokens + 8 \
        or result.usage.completion_tokens < 8


def test_openai_stream_ends_with_finish_reason_then_done(server: RunningServer) -> None:
    whole = openai_client(server).completions.create(model="m", prompt="def f(x):\n    return ", suffix="\n",
                                                     max_tokens=10).choices[0].text
    chunks = list(openai_client(server).completions.create(model="m", prompt="def f(x):\n    return ",
                                                           suffix="\n", max_tokens=10, stream=True))
    assert "".join(chunk.choices[0].text for chunk in chunks) == whole
    assert [c.choices[0].finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    with httpx.stream("POST", server.url + "/v1/completions", timeout=30,
                      json={"prompt": "x = ", "max_tokens": 4, "stream": True}) as reply:
        payloads = sse_events(reply.read().decode())
    assert payloads[-1] == "[DONE]" and json.loads(payloads[-2])["choices"][0]["finish_reason"] is not None


def test_openai_prompt_with_fim_tokens_is_split(server: RunningServer) -> None:
    openai_client(server).completions.create(
        model="m", prompt="<|fim_prefix|>def f():\n    <|fim_suffix|>\nf()\n<|fim_middle|>", max_tokens=2)
    job = server.backend.jobs[-1]
    assert (job.prefix, job.suffix, job.max_tokens) == ("def f():\n    ", "\nf()\n", 2)


def test_openai_errors_have_openais_shape(server: RunningServer) -> None:
    reply = post(server, "/v1/completions", {"max_tokens": 3})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert list(error) == ["message", "type", "param", "code"] and error["param"] == "prompt"
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        openai_client(server).completions.create(model="m", prompt="x", max_tokens=-2)
    missing = httpx.get(server.url + "/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"


def test_models_and_props(server: RunningServer) -> None:
    models = openai_client(server).models.list()
    assert [m.id for m in models.data] == [server.backend.model_name] and models.data[0].owned_by == "coda-lsp"
    props = httpx.get(server.url + "/props").json()
    assert props["default_generation_settings"]["n_ctx"] == MAX_POSITIONS and props["total_slots"] >= 1


# ---- bad input ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "field"), [
    ({"input_suffix": ""}, "input_prefix"),
    ({"input_prefix": 3, "input_suffix": ""}, "input_prefix"),
    ({"input_prefix": ""}, "input_suffix"),
    ({**PLAIN, "n_predict": "many"}, "n_predict"),
    ({**PLAIN, "n_predict": 1.5}, "n_predict"),
    ({**PLAIN, "temperature": "hot"}, "temperature"),
    ({**PLAIN, "n_cmpl": 0}, "n_cmpl"),
    ({**PLAIN, "stop": 3}, "stop"),
    ({**PLAIN, "input_extra": "util.py"}, "input_extra"),
    ({**PLAIN, "input_extra": [{"filename": "a.py"}]}, "input_extra[0].text"),
    ({**PLAIN, "input_extra": [{"filename": 1, "text": ""}]}, "input_extra[0].filename"),
    ({**PLAIN, "response_fields": "content"}, "response_fields"),
    ({**PLAIN, "stream": "yes"}, "stream"),
], ids=lambda value: value if isinstance(value, str) else "")
def test_each_bad_field_is_a_400_naming_it(server: RunningServer, body: dict[str, Any], field: str) -> None:
    reply = post(server, "/infill", body)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["code"] == 400 and error["type"] == "invalid_request_error"
    assert error["message"].startswith(field + " ") and "\n" not in error["message"]


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_a_body_that_is_no_json_object_is_a_400(server: RunningServer, content: bytes) -> None:
    reply = httpx.post(server.url + "/infill", content=content, headers={"Content-Type": "application/json"})
    assert reply.status_code == 400 and "JSON" in reply.json()["error"]["message"]


# ---- keys and limits ---------------------------------------------------------------------------------------------

def test_the_key_is_required_except_for_health(keyed_server: RunningServer) -> None:
    url = keyed_server.url
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cre"}):
        reply = httpx.post(url + "/infill", json=PLAIN, headers=headers)
        assert reply.status_code == 401 and reply.json() == {
            "error": {"code": 401, "message": "Invalid API Key", "type": "authentication_error"}}
    assert httpx.get(url + "/metrics").status_code == 401
    assert httpx.get(url + "/health").json() == {"status": "ok"}
    good = {"Authorization": "Bearer s3cret"}
    assert httpx.post(url + "/infill", json={**PLAIN, "n_predict": 2}, headers=good).status_code == 200
    assert httpx.post(url + "/infill", json={**PLAIN, "n_predict": 2}, headers={"X-Api-Key": "s3cret"}).status_code \
        == 200
    assert "coda_requests_total" in httpx.get(url + "/metrics", headers=good).text
    with pytest.raises(openai.AuthenticationError):
        openai_client(keyed_server, "wrong").completions.create(model="m", prompt="x", max_tokens=1)
    assert openai_client(keyed_server, "s3cret").completions.create(model="m", prompt="x", max_tokens=1).choices
    assert keyed_server.backend.jobs[-1].client.startswith(
        __import__("hashlib").sha256(b"s3cret").hexdigest()[:12] + "|127.0.0.1|")


def test_a_large_body_is_a_413(keyed_server: RunningServer) -> None:
    headers = {"Authorization": "Bearer s3cret"}
    big = {**PLAIN, "input_prefix": "x" * 5000}
    reply = httpx.post(keyed_server.url + "/infill", json=big, headers=headers)
    assert reply.status_code == 413 and reply.json()["error"]["code"] == 413

    def chunked() -> Any:  # no Content-Length: the bytes that arrive are counted
        yield b'{"input_suffix": "", "input_prefix": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}'

    reply = httpx.post(keyed_server.url + "/infill", content=chunked(), headers=headers)
    assert reply.status_code == 413


def test_metrics_count_requests_passes_and_rows(server: RunningServer) -> None:
    post(server, "/infill", {**PLAIN, "n_predict": 3})
    text = httpx.get(server.url + "/metrics").text
    values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
              if line and not line.startswith("#")}
    assert values['coda_requests_total{endpoint="infill",status="200"}'] >= 1
    assert values['coda_requests_total{endpoint="infill",status="400"}'] >= 1
    assert values["coda_passes_total"] >= 3 and values["coda_rows_per_pass_count"] >= 3
    assert values["coda_tokens_predicted_total"] >= 1
    assert values['coda_request_seconds_count{endpoint="infill"}'] >= 2
    assert "coda_queue_depth" in values and "coda_rows_in_flight" in values


def test_a_client_that_goes_away_stops_the_engine(server: RunningServer) -> None:
    backend = server.backend
    before = backend.cancelled
    with pytest.raises(httpx.ReadTimeout):
        post(server, "/infill", {**PLAIN, "n_predict": 12}, timeout=httpx.Timeout(5, read=0.05))
    deadline = time.monotonic() + 5
    while backend.cancelled == before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert backend.cancelled == before + 1
    assert post(server, "/infill", {**PLAIN, "n_predict": 2}).status_code == 200  # the engine thread is free again
