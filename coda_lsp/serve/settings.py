"""ServeSettings: the HTTP layer's slice of `coda-lsp serve`'s command line (limits, key, defaults of a request)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServeSettings:
    """What app.py needs; the backend's own settings (rows, queue, cache, device) go to its factory instead."""

    model_path: Path | None = None   # shown by GET /props; the backend loads the model
    api_key: str | None = None       # None: no Authorization needed (loopback only, or --insecure-no-auth)
    max_tokens: int = 64             # the span when a request names none (n_predict -1), and the cap of any span
    # The cap on n / n_cmpl: each completion is one row of the shared batch (--max-rows), so a larger n would
    # crowd out other clients' requests.
    max_completions: int = 8
    max_body_bytes: int = 1 << 20    # 1 MiB: a 64-line ring of 16 chunks plus 256 + 64 lines of context is ~150 KiB
    # Tokens the input_extra chunks may take before the prefix (llama.vim's ring buffer). llama-server keeps the
    # last n_ctx - n_batch - 2 * n_predict of them; ours is a fixed budget, and what the canvas has no room for
    # is dropped before the prefix or suffix lose anything.
    extra_tokens: int = 1024
    # Rows after the first of a several-completion request sample at this temperature when the request asks for
    # greedy decoding, which would give n copies of one text (the LSP's candidate_temperature).
    candidate_temperature: float = 0.8
    # Sent by OpenAI's /v1/completions when max_tokens is absent: the OpenAI API's own default.
    openai_max_tokens: int = 16
