"""The job contract between the front ends and the scheduler: an InfillJob in, an InfillOutcome out.

The language server, `coda-lsp serve` and the CLI all describe an infill as one InfillJob; whichever backend
runs it (the scheduler in this process, a `coda-lsp serve` over HTTP, Ray Serve replicas) answers an
InfillOutcome. No torch here."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from .params import SERVED, InfillParams

# Called from the scheduler's thread after a pass with each row's decided text so far (streaming).
ProgressCallback = Callable[[tuple[str, ...]], None]
# A row's text so far -> whether it is all the caller needs (decoding stops once every row's is).
TextCheck = Callable[[str], bool]


def canvas_prefix(prefix: str) -> str:
    """The prefix a canvas starts with. Position i is predicted from position i-1, so a span cannot open the
    canvas: an empty prefix (the top of a file, a warm-up without context) becomes one newline, which reads as "a
    file starting here"."""
    return prefix or "\n"


class Priority(enum.IntEnum):
    AHEAD = 0    # work ahead of the user: runs only while no request waits or decodes, and yields to one
    REQUEST = 1  # what a user or a client is waiting for


@dataclass(frozen=True)
class InfillJob:
    """Fill at most `max_tokens` tokens between `prefix` and `suffix`, once per temperature (a row each)."""

    prefix: str                          # everything before the span (cross-file context, then the code)
    suffix: str
    max_tokens: int                      # the span; 0: a warm-up, which computes and keeps the canvas's cache
    params: InfillParams = SERVED
    temperatures: tuple[float, ...] = (0.0,)
    seed: int | None = None              # row i samples from seed + i; None: random
    stop: tuple[str, ...] = ()           # decoding ends once every row's decided text holds one of these
    deadline: float | None = None        # time.monotonic(): then answer with the text decided so far
    client: str | None = None            # whose kept canvases it may start from and add to; None: no reuse
    priority: Priority = Priority.REQUEST
    key: str | None = None               # equal keys, equal answers: a job joins one in flight with its key
    done_when: TextCheck | None = field(default=None, compare=False)  # in this process only
    on_progress: ProgressCallback | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 0:
            raise ValueError(f"max_tokens must be a whole number >= 0, got {self.max_tokens!r}")
        if not self.temperatures or any(t < 0 for t in self.temperatures):
            raise ValueError("a job needs at least one temperature, each >= 0")

    @property
    def is_warm_up(self) -> bool:
        return self.max_tokens == 0

    def text_check(self) -> TextCheck | None:
        """Whether a row's decided text is all the job needs (it holds a stop string, or `done_when` says so);
        None when decoding runs to the span's end."""
        stop, done_when = self.stop, self.done_when
        if not stop and done_when is None:
            return None
        return lambda text: any(s in text for s in stop) or (done_when is not None and done_when(text))


@dataclass(frozen=True)
class InfillOutcome:
    """What a job produced and what it cost. A row's text is its span up to the first still-masked position."""

    texts: tuple[str, ...]
    finished: tuple[bool, ...]           # False: the deadline came while masks were left
    tokens_predicted: tuple[int, ...]    # tokens of each row's text
    tokens_cached: int                   # canvas positions taken from the client's kept canvas
    tokens_evaluated: int                # canvas positions the first pass computed
    prompt_ms: float                     # the first pass (the whole canvas, or its window outside the kept cache)
    predicted_ms: float                  # the denoising passes after it
    passes: int


class PassObserver(Protocol):
    """Where a scheduler reports its work (the HTTP server's Prometheus metrics implement it)."""

    def pass_done(self, rows: int, tokens: int) -> None: ...       # one pass over `rows` rows
    def cache_lookup(self, hit: bool, reused_tokens: int) -> None: ...
    def queue_depth(self, waiting: int, rows_in_flight: int) -> None: ...
