"""One request path: the same prefix, suffix and settings give the same greedy answer through the language server
(a real process), through `coda-lsp serve`'s /infill, and through Engine.infill directly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from lsprotocol import types

from coda_engine import Engine
from coda_engine.jobs import InfillJob
from coda_lsp.context import TokenCounter
from coda_lsp.documents import Document
from coda_lsp.filters import run_filters
from coda_lsp.pipeline import infill_job
from coda_lsp.serve.settings import ServeSettings
from coda_lsp.settings import Settings
from tests.serve.conftest import real_backend, start_server
from tests.server.e2e.conftest import inline, start_session, wait_until_settled

pytestmark = pytest.mark.e2e

TEXT = "def total(values):\n    result = 0\n    for value in values:\n        result += \n    return result\n"
CURSOR = types.Position(line=3, character=18)
# Nothing before the job that would differ between the paths: no cross-file snippets, no debounce warm-up, no
# work ahead (whose kept canvases would let a later job start from an approximate cache).
SETTINGS = {"crossFile": False, "debounceMs": 0, "prefetchNext": False, "warmOnFocus": False, "contextTokens": 256}


def lsp_job(engine: Engine) -> tuple[InfillJob, Any]:
    """The job the language server builds at CURSOR, and its context (for the filters)."""
    from coda_lsp.context import build_context
    from coda_lsp.pipeline import POSITION_SLACK

    settings, problems = Settings().merged(SETTINGS)
    assert not problems
    doc = Document("file:///one.py", "python", 1, TEXT)
    offset = doc.offset_at(CURSOR, "utf-16")
    room = engine.config.max_position_embeddings - settings.generation.max_tokens - POSITION_SLACK
    ctx = build_context(doc, offset, settings.context, TokenCounter(engine.tokenizer), max_context_tokens=room)
    return infill_job(ctx, settings.generation, 1, None), ctx


async def test_the_lsp_the_http_server_and_the_engine_give_the_same_answer(short_checkpoint: Path,
                                                                          engine: Engine) -> None:
    job, ctx = lsp_job(engine)
    assert job.prefix.endswith("result += ") and job.max_tokens == 24  # the rest of one line

    direct = engine.infill(job.prefix, job.suffix, job.max_tokens, job.params, done_when=job.done_when).text

    served = start_server(lambda observer: real_backend(engine, observer), ServeSettings(max_tokens=64))
    try:
        served.wait_ready()
        reply = httpx.post(served.url + "/infill", json={"input_prefix": job.prefix, "input_suffix": job.suffix,
                                                         "n_predict": job.max_tokens}, timeout=120)
    finally:
        served.stop()
    assert reply.status_code == 200, reply.text
    over_http = reply.json()["content"]
    # /infill decodes the whole span; the language server stops once the filters have what they keep. Tokens
    # never change once revealed, so the direct call's text starts the full one.
    assert over_http.startswith(direct)

    session = await start_session(short_checkpoint, "vscode", configuration=SETTINGS,
                                  initialization_options={"coda": SETTINGS})
    try:
        assert (await wait_until_settled(session.client))["state"] == "ready"
        uri = session.open(TEXT)
        items = await inline(session.client, uri, CURSOR)
    finally:
        await session.client.shutdown_session()
    expected = run_filters(direct, ctx)
    assert expected and expected == run_filters(over_http, ctx)  # random weights: text the filters keep
    assert [item.insert_text for item in items] == [expected]
