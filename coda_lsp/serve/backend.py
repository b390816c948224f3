"""What the HTTP layer asks of an engine: one infill job in, its outcome out (the contract between app and backends).

The HTTP layer (app.py) turns llama-server's /infill and OpenAI's /v1/completions into an InfillJob; a backend
decodes it (batched.py: rows of the shared, continuously batched loop) and answers an InfillOutcome.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

# Called from the engine's thread after a pass with each row's decided text so far (streaming).
ProgressCallback = Callable[[tuple[str, ...]], None]


@dataclass(frozen=True)
class InfillJob:
    """One request: fill at most `max_tokens` tokens between `prefix` and `suffix`, once per temperature."""

    prefix: str                          # everything before the span: cross-file context, the prefix, `prompt`
    suffix: str
    max_tokens: int                      # the span; 0 = only compute and keep the canvas's cache (n_predict 0)
    temperatures: tuple[float, ...] = (0.0,)  # one row per completion (n / n_cmpl)
    seed: int | None = None              # row i samples from seed + i; None: random
    stop: tuple[str, ...] = ()           # decoding ends once every row's decided text holds one of these
    deadline: float | None = None        # time.monotonic(): then answer with the text decided so far
    client: str | None = None            # whose cached canvases it may start from and add to; None: no reuse
    on_progress: ProgressCallback | None = field(default=None, compare=False)


@dataclass(frozen=True)
class InfillOutcome:
    """What a job produced and what it cost. A row's text is its span up to the first still-masked position."""

    texts: tuple[str, ...]
    finished: tuple[bool, ...]           # False: the deadline (or a stop) came while masks were left
    tokens_predicted: tuple[int, ...]    # tokens of each row's text
    tokens_cached: int                   # canvas positions taken from the client's cached canvas
    tokens_evaluated: int                # canvas positions the first pass computed
    prompt_ms: float                     # the first pass (the whole canvas, or its window outside the reused cache)
    predicted_ms: float                  # the denoising passes after it
    passes: int


class Overloaded(Exception):
    """Too many rows in flight and queued: answer 503 with Retry-After."""

    def __init__(self, retry_after_s: int = 1) -> None:
        super().__init__(f"the server is busy; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s

    def __reduce__(self) -> tuple[type[Overloaded], tuple[int]]:
        # Pickled (a Ray replica's answer), an exception is rebuilt from its args, here the message.
        return Overloaded, (self.retry_after_s,)


class PassObserver(Protocol):
    """Where a backend reports its work (metrics.py implements it with Prometheus counters)."""

    def pass_done(self, rows: int, tokens: int) -> None: ...       # one batched forward pass over `rows` rows
    def cache_lookup(self, hit: bool, reused_tokens: int) -> None: ...
    def queue_depth(self, waiting: int, rows_in_flight: int) -> None: ...


class Backend(Protocol):
    """A loaded model serving jobs. `infill` may run many jobs at once; cancelling the awaiting task stops the
    job's rows within one pass."""

    tokenizer: Any                       # coda_engine.tokenizer.Tokenizer: encode/decode for truncation, usage
    max_positions: int                   # canvas positions the model takes (prefix + span + suffix)
    model_name: str
    device: str                          # where the model runs, for GET /props

    async def infill(self, job: InfillJob) -> InfillOutcome: ...
    def close(self) -> None: ...
