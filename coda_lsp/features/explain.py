"""coda/explainCompletion: the last prompt built for a document, in parts: each cross-file snippet's source kind,
path, line range, score and tokens, then the prefix's and suffix's budgets and tokens."""

from __future__ import annotations

from typing import Any

from pygls.exceptions import JsonRpcInvalidParams

from coda_lsp.context import CompletionContext
from coda_lsp.features import param
from coda_lsp.server import CodaServer

EXPLAIN = "coda/explainCompletion"


def register(server: CodaServer) -> None:
    @server.feature(EXPLAIN)
    def explain_completion(ls: CodaServer, params: Any) -> dict[str, Any] | None:
        """Params `{"textDocument": {"uri": ...}}`; null when no completion was asked for that document yet."""
        uri = param(param(params, "textDocument"), "uri")
        if not isinstance(uri, str):
            raise JsonRpcInvalidParams(f"{EXPLAIN} expects {{\"textDocument\": {{\"uri\": ...}}}}")
        ctx = ls.pipeline.last_contexts.get(uri)
        return explain(ctx, ls.pipeline.count_tokens) if ctx is not None else None


def explain(ctx: CompletionContext, count_tokens: Any) -> dict[str, Any]:
    cross_file = ctx.cross_file
    return {
        "uri": ctx.uri,
        "version": ctx.version,
        "crossFile": {
            "budget": cross_file.budget,
            "tokens": cross_file.tokens,
            "snippets": [{"kind": placed.snippet.kind, "path": placed.snippet.path,
                          "startLine": placed.snippet.start_line, "endLine": placed.snippet.end_line,
                          "score": placed.snippet.score, "tokens": placed.tokens} for placed in cross_file.snippets],
            "text": cross_file.text,
        },
        "prefix": {"budget": ctx.prefix_budget, "tokens": _tokens(ctx.prefix, count_tokens)},
        "suffix": {"budget": ctx.suffix_budget, "tokens": _tokens(ctx.suffix, count_tokens)},
    }


def _tokens(text: str, count_tokens: Any) -> int:
    return sum(count_tokens(line) for line in text.splitlines(keepends=True)) if count_tokens else 0
