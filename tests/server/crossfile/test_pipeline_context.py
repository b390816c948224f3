"""The pipeline's context with cross-file snippets: within contextTokens, unused share back to the prefix, the
engine's prefix and the cache key include them, and `crossFile: false` builds exactly the old context."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from coda_lsp.cache import CompletionCache
from coda_lsp.context import build_context
from coda_engine.params import EngineOptions
from coda_lsp.loader import ModelHost, ModelSpec, load_local_backend
from coda_lsp.pipeline import POSITION_SLACK, Pipeline, model_prefix
from coda_lsp.settings import Settings
from tests.server.crossfile.golden_prompts import load_case, load_workspace
from tests.server.crossfile.test_prompts import path_of

LONG_PREFIX = "".join(f"value_{i} = compute({i}, {i + 1})\n" for i in range(400))


@pytest.fixture(scope="module")
def engine(tiny_checkpoint: Path) -> Any:
    backend = load_local_backend(tiny_checkpoint, EngineOptions(), (8,), 0.8)
    yield backend
    backend.close()


def _pipeline_and_doc(tmp_path: Path, engine: Any, **settings: Any) -> tuple[Pipeline, Any, int, Settings]:
    case = load_case(path_of("python_imports"))
    main = case["files"]["app/main.py"]
    case = {**case, "files": {**case["files"], "app/main.py": LONG_PREFIX + main}}
    workspace = load_workspace(case, tmp_path, len)
    merged, problems = Settings().merged(settings)
    assert not problems
    pipeline = Pipeline(ModelHost(ModelSpec(Path("unused"), "cpu", None)), CompletionCache(), workspace.cross_file)
    return pipeline, workspace.current, workspace.offset, merged


def test_cross_file_off_builds_exactly_the_in_file_context(tmp_path: Path, engine: Any) -> None:
    pipeline, doc, offset, settings = _pipeline_and_doc(tmp_path, engine, crossFile=False)
    ctx = pipeline.context(engine, doc, offset, settings)
    counter = pipeline.count_tokens
    assert counter is not None
    room = engine.max_positions - settings.generation.max_tokens - POSITION_SLACK
    assert ctx == build_context(doc, offset, settings.context, counter, max_context_tokens=room)
    assert ctx.cross_file.text == "" and model_prefix(ctx, with_cross_file=True) == ctx.prefix


def test_snippets_take_at_most_their_share_and_leave_the_rest_to_the_file(tmp_path: Path, engine: Any) -> None:
    pipeline, doc, offset, settings = _pipeline_and_doc(tmp_path, engine, contextTokens=512, crossFileShare=0.25)
    ctx = pipeline.context(engine, doc, offset, settings)
    counter = pipeline.count_tokens
    assert counter is not None
    used = ctx.cross_file.tokens
    assert 0 < used <= ctx.cross_file.budget == 128
    # the file's budget is what the snippets left, and the long prefix fills it
    assert ctx.prefix_budget + ctx.suffix_budget == 512 - used
    prefix_tokens = sum(counter(line) for line in ctx.prefix.splitlines(keepends=True))
    suffix_tokens = sum(counter(line) for line in ctx.suffix.splitlines(keepends=True))
    assert 512 - used - 20 <= prefix_tokens + suffix_tokens <= 512 - used  # whole lines: up to one short
    assert model_prefix(ctx, with_cross_file=True).startswith(ctx.cross_file.text) and model_prefix(ctx, with_cross_file=True).endswith(ctx.prefix)
    assert pipeline.last_contexts[doc.uri] == ctx
    # a larger share lets the same snippets in but the file keeps what they do not use
    wide = pipeline.context(engine, doc, offset, replace(settings, cross_file=replace(settings.cross_file,
                                                                                        share=0.9)))
    assert wide.cross_file.text == ctx.cross_file.text and wide.prefix_budget == ctx.prefix_budget


def test_log_prompts_logs_every_part(tmp_path: Path, engine: Any, caplog: pytest.LogCaptureFixture) -> None:
    pipeline, doc, offset, settings = _pipeline_and_doc(tmp_path, engine, logPrompts=True)
    with caplog.at_level("INFO", logger="coda_lsp.pipeline"):
        ctx = pipeline.context(engine, doc, offset, settings)
    [record] = [r for r in caplog.records if r.message.startswith("prompt for")]
    for placed in ctx.cross_file.snippets:
        assert f"{placed.snippet.kind} {placed.snippet.path}:{placed.snippet.start_line + 1}-" in record.message
    assert f"prefix budget {ctx.prefix_budget}" in record.message
