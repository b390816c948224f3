"""`python -m coda_engine.tools.bench --suite cpu`: the editor's workload on a CPU, in each weight format, beside AR.

The workload (issue 18's, measured against llama.cpp there): 768 tokens of real code before the cursor and 256
after it, a 24-token span, random weights of the chosen shape (so the model is never sure: one token a pass,
the worst case). A cold request (nothing cached), then five keystrokes, each typing the next character of the
code and reusing the last call's cache, as the server does. Both through Engine.infill's defaults.

Beside it, transformers' Qwen3ForCausalLM with the same weights in the same format, greedy, 24 tokens: cold, the
whole 1,024-token prompt and then the tokens; typing, what an AR infill server (llama.cpp) does after an edit at
the end of the prefix: its cached prompt is kept up to the edit, the suffix's 256 tokens after it are evaluated
again, then the 24 tokens are written. Every row is measured in this process, so ratios are meaningful.

Each format's line also splits the diffusion passes' time into the decoder layers, the vocabulary head and the
rest (sampling and reveal). A second table compares each format's logits at the span's masked positions with
fp32's: of the cold canvas's first pass, and of a window pass (the block and its margin, over the format's own
cache), which multiplies thin products like every later pass: the top-1 token's agreement and the mean KL
divergence KL(fp32 || format).

With `--reveal-per-pass K,...` a third table is a cost simulation, labelled as one: each format decodes the same
workload revealing exactly K tokens a pass (ceil(24 / K) passes, no confidence bar, no early end), the passes a
trained model sure of K tokens a pass would run, beside llama.cpp's and AR's rows; it says from which K coda is
faster than llama.cpp.
"""

from __future__ import annotations

import gc
import inspect
import logging
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from coda_engine.cache import KVCache
from coda_engine.config import load_config
from coda_engine.engine import Engine, load_model
from coda_engine.jobs import InfillJob, InfillOutcome
from coda_engine.model import CodaModel, Window
from coda_engine.params import SERVED, InfillParams
from coda_engine.precision import Precision, resolve_precision
from coda_engine.scheduler import Scheduler
from coda_engine.threads import in_passing_thread
from coda_engine.tokenizer import load_tokenizer
from coda_engine.tools.autoregressive import qwen3_baseline
from coda_engine.tools.bench_llamacpp import llama_cpp_rows

log = logging.getLogger("coda_engine.tools.bench")

PREFIX_TOKENS, SUFFIX_TOKENS, SPAN_TOKENS, KEYSTROKES = 768, 256, 24, 5


@dataclass(frozen=True)
class DiffusionTimes:
    """The cold request and the keystrokes of one decoding rule, in ms and passes."""

    cold_ms: float
    cold_passes: int
    typing_ms: float  # median over the keystrokes
    typing_passes: float  # mean over the keystrokes


@dataclass(frozen=True)
class FormatRow:
    """One weight format: diffusion and AR latencies in ms, where the diffusion passes' time went, and the cost
    simulation's times by tokens revealed a pass."""

    precision: Precision
    diffusion: DiffusionTimes
    ar_cold_ms: float | None
    ar_typing_ms: float | None
    split: dict[str, float]  # share of the diffusion calls' time: layers, head, rest
    simulated: dict[int, DiffusionTimes]


class PassTimer:
    """Wall time spent in the model's layers and in its head, by wrapping the two methods of one model object."""

    def __init__(self, engine: Engine) -> None:
        self.seconds = {"layers": 0.0, "head": 0.0}
        self._model = engine.model
        self._model.forward = self._timed(self._model.forward, "layers")
        self._model.lm_head.forward = self._timed(self._model.lm_head.forward, "head")

    def restore(self) -> None:
        """The model's own methods again (the instance attributes set above shadow them)."""
        del self._model.forward, self._model.lm_head.forward

    def _timed(self, function: Callable[..., Any], part: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[part] += time.perf_counter() - started

        return timed


def workload(tokenizer: Any) -> tuple[str, str, str]:
    """(prefix, suffix, the text typed after the prefix) from real Python source, cut by `tokenizer`'s tokens."""
    import json.decoder
    import logging.handlers

    source = inspect.getsource(logging.handlers) + inspect.getsource(json.decoder)
    ids = tokenizer.encode(source)
    prefix = tokenizer.decode(ids[:PREFIX_TOKENS])
    rest = source[len(prefix):] if source.startswith(prefix) else tokenizer.decode(ids[PREFIX_TOKENS:])
    typed = rest[:KEYSTROKES]
    suffix = tokenizer.decode(tokenizer.encode(rest)[:SUFFIX_TOKENS])
    return prefix, suffix, typed


def reveal_per_pass(tokens: int) -> InfillParams:
    """The served parameters revealing exactly `tokens` a pass (the last pass the rest): the schedule's quota with
    the confidence bar off and no early end, so the pass count is the same whatever the weights."""
    return replace(SERVED, steps=math.ceil(SPAN_TOKENS / tokens), threshold=1.0, variable_length=False)


def diffusion_rows(engine: Engine, scheduler: Scheduler, params: InfillParams = SERVED,
                   client: str = "bench") -> tuple[DiffusionTimes, dict[str, float]]:
    """The cold request and the keystrokes through `scheduler` (the servers' path: each keystroke starts from the
    `client`'s last kept canvas), and where the passes' time went."""
    prefix, suffix, typed = workload(engine.tokenizer)
    scheduler.submit(InfillJob("\n", "", 2, InfillParams(steps=1))).future.result()  # allocator set-up
    timer = PassTimer(engine)

    def timed(text: str) -> tuple[float, InfillOutcome]:
        started = time.perf_counter()
        outcome = scheduler.submit(InfillJob(text, suffix, SPAN_TOKENS, params, client=client)).future.result()
        return (time.perf_counter() - started) * 1000, outcome

    cold_ms, cold = timed(prefix)
    typing = [timed(prefix + typed[:count]) for count in range(1, len(typed) + 1)]
    timer.restore()
    total_s = (cold_ms + sum(ms for ms, _ in typing)) / 1000
    split = {part: seconds / total_s for part, seconds in timer.seconds.items()}
    split["rest"] = 1 - sum(timer.seconds.values()) / total_s
    times = DiffusionTimes(cold_ms, cold.passes, statistics.median(ms for ms, _ in typing),
                           statistics.mean(outcome.passes for _, outcome in typing))
    return times, split


def autoregressive_rows(engine: Engine, float_model: Callable[[], CodaModel] | None
                        ) -> tuple[float | None, float | None]:
    """AR cold and typing ms (see the module's doc); None without transformers."""
    model = qwen3_baseline(engine, float_model() if engine.precision.int8 and float_model is not None else None)
    if model is None:
        return None, None
    from transformers import DynamicCache
    prefix, suffix, _ = workload(engine.tokenizer)
    prefix_ids = engine.tokenizer.encode(prefix)
    prompt = torch.tensor([prefix_ids + engine.tokenizer.encode(suffix)])

    def write(cache: DynamicCache, next_ids: torch.Tensor) -> None:
        """Evaluate `next_ids` after the cache, then write SPAN_TOKENS tokens greedily."""
        for _ in range(SPAN_TOKENS):
            logits = model(next_ids, past_key_values=cache, use_cache=True).logits
            next_ids = logits[:, -1:].argmax(-1)

    with torch.inference_mode():
        model(prompt[:, :8], use_cache=True)  # set-up
        started = time.perf_counter()
        write(DynamicCache(), prompt)
        cold_ms = (time.perf_counter() - started) * 1000
        typing_ms = []
        cache = DynamicCache()
        model(prompt[:, :len(prefix_ids)], past_key_values=cache, use_cache=True)  # kept from before the edit
        for _ in range(KEYSTROKES):
            cache.crop(len(prefix_ids))
            started = time.perf_counter()
            write(cache, prompt[:, len(prefix_ids):])
            typing_ms.append((time.perf_counter() - started) * 1000)
    return cold_ms, statistics.median(typing_ms)


@dataclass(frozen=True)
class LogitAgreement:
    """A format's logits at the span's masked positions against fp32's, for the first pass and a window pass."""

    precision: Precision
    top1: tuple[float, float]  # share of positions whose most probable token is fp32's: first pass, window pass
    kl: tuple[float, float]    # mean KL(fp32 || format) in nats, the same two passes


def masked_logits(engine: Engine) -> tuple[torch.Tensor, torch.Tensor]:
    """(S, V) fp32 logits at the workload's masked span positions: of the first pass over the whole canvas, and
    of a window pass (the span, the fast path's margin each side) over the cache that pass wrote."""
    prefix, suffix, _ = workload(engine.tokenizer)
    canvas_ids, (start, end) = engine.layout(prefix, suffix, SPAN_TOKENS)
    ids = torch.tensor([canvas_ids])
    model, margin = engine.model, InfillParams().cache.margin
    cache = KVCache.allocate(model.config, 1, ids.shape[1], ids.device, model.compute_dtype)
    with torch.inference_mode():
        first = model([Window(ids, cache, 0, slice(start - 1, end - 1))])[0]
        low, high = max(0, start - 1 - margin), min(ids.shape[1], end + margin)
        window = model([Window(ids[:, low:high], cache, low, slice(start - 1 - low, end - 1 - low))])[0]
        return model.lm_head(first[0]).float(), model.lm_head(window[0]).float()


def agreement(reference: tuple[torch.Tensor, torch.Tensor], logits: tuple[torch.Tensor, torch.Tensor],
              precision: Precision) -> LogitAgreement:
    top1, kl = [], []
    for expected, got in zip(reference, logits):
        top1.append(float((expected.argmax(-1) == got.argmax(-1)).float().mean()))
        kl.append(float(torch.nn.functional.kl_div(got.log_softmax(-1), expected.log_softmax(-1), log_target=True,
                                                   reduction="batchmean")))
    return LogitAgreement(precision, (top1[0], top1[1]), (kl[0], kl[1]))


def measure_format(path: Path, name: str, with_ar: bool, reference: tuple[torch.Tensor, torch.Tensor] | None,
                   simulate: tuple[int, ...] = ()) -> tuple[FormatRow, LogitAgreement | None]:
    engine = Engine.from_pretrained(path, dtype=name)
    log.info("measuring %s weights (%s)", engine.precision.name, engine.precision.reason)
    # Everything but the scheduler's jobs on passing threads: the scheduler's must be the only live thread that
    # runs torch's parallel kernels, as in the servers (coda_engine.threads).
    quality = (in_passing_thread(lambda: agreement(reference, masked_logits(engine), engine.precision))
               if reference is not None else None)
    scheduler = Scheduler(engine)
    try:
        diffusion, split = diffusion_rows(engine, scheduler)
        # Each K its own client: a keystroke starts from its own rule's last canvas, as in the rows above.
        simulated = {tokens: diffusion_rows(engine, scheduler, reveal_per_pass(tokens), f"bench-k{tokens}")[0]
                     for tokens in simulate}
    finally:
        scheduler.close()
    config, device = engine.config, engine.device
    float_model = (lambda: load_model(path, config, device, Precision("float32", torch.float32, "")))
    ar_cold, ar_typing = (in_passing_thread(lambda: autoregressive_rows(engine, float_model)) if with_ar
                          else (None, None))
    row = FormatRow(engine.precision, diffusion, ar_cold, ar_typing, split, simulated)
    del engine
    gc.collect()
    return row, quality


def fp32_masked_logits(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    engine = Engine.from_pretrained(path, dtype="fp32")
    logits = in_passing_thread(lambda: masked_logits(engine))
    del engine
    gc.collect()
    return logits


def format_quality_table(rows: list[LogitAgreement]) -> str:
    lines = ["| weights | top-1 = fp32, first pass | top-1 = fp32, window pass | KL nats, first pass "
             "| KL nats, window pass |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {row.precision.name} | {100 * row.top1[0]:.1f} % | {100 * row.top1[1]:.1f} % | {row.kl[0]:.2e} "
              f"| {row.kl[1]:.2e} |" for row in rows]
    return "\n".join(lines)


def format_cpu_table(rows: list[FormatRow]) -> str:
    lines = ["| weights | cold ms (passes) | typing ms, median (passes) | AR cold ms | AR typing ms | cold vs AR "
             "| typing vs AR | time in layers / head / rest |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        times = row.diffusion
        split = " / ".join(f"{100 * row.split[part]:.0f} %" for part in ("layers", "head", "rest"))
        lines.append(f"| {row.precision.name} | {times.cold_ms:.0f} ({times.cold_passes}) | {times.typing_ms:.0f} "
                     f"({times.typing_passes:.1f}) | {_ms(row.ar_cold_ms)} | {_ms(row.ar_typing_ms)} "
                     f"| {_ratio(times.cold_ms, row.ar_cold_ms)} | {_ratio(times.typing_ms, row.ar_typing_ms)} "
                     f"| {split} |")
    return "\n".join(lines)


def format_break_even_table(rows: list[FormatRow], llama_cpp: tuple[float, float] | None) -> str:
    """The cost simulation's rows, each against AR and llama.cpp, and the smallest K at which coda wins."""
    cold_cpp, typing_cpp = llama_cpp if llama_cpp is not None else (None, None)
    lines = ["Cost simulation: exactly K tokens revealed a pass (the passes a model sure of K tokens a pass runs; "
             "random weights decide nothing here)",
             "| weights | K | cold ms (passes) | typing ms, median (passes) | cold vs AR | typing vs AR "
             "| cold vs llama.cpp | typing vs llama.cpp |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    verdicts = []
    for row in rows:
        for tokens, times in sorted(row.simulated.items()):
            lines.append(f"| {row.precision.name} | {tokens} | {times.cold_ms:.0f} ({times.cold_passes}) "
                         f"| {times.typing_ms:.0f} ({times.typing_passes:.1f}) "
                         f"| {_ratio(times.cold_ms, row.ar_cold_ms)} | {_ratio(times.typing_ms, row.ar_typing_ms)} "
                         f"| {_ratio(times.cold_ms, cold_cpp)} | {_ratio(times.typing_ms, typing_cpp)} |")
        if llama_cpp is not None and row.simulated:
            verdicts.append(f"{row.precision.name}: cold {_break_even(row, 'cold_ms', cold_cpp)}, typing "
                            f"{_break_even(row, 'typing_ms', typing_cpp)}")
    if verdicts:
        lines.append("Faster than llama.cpp from: " + "; ".join(verdicts))
    return "\n".join(lines)


def _break_even(row: FormatRow, field: str, baseline: float) -> str:
    winning = [tokens for tokens, times in sorted(row.simulated.items()) if getattr(times, field) <= baseline]
    return f"K = {winning[0]}" if winning else f"no K up to {max(row.simulated)}"


def _ratio(value: float, baseline: float | None) -> str:
    return f"{value / baseline:.2f}x" if baseline else "-"


def _llama_cpp_ms(path: Path, gguf: Path, extra_buffers: bool) -> tuple[float, float]:
    """llama.cpp's cold and typing ms on the suite's workload, cut by the checkpoint's own tokenizer."""
    tokenizer = load_tokenizer(path)
    prefix, suffix, _ = workload(tokenizer)
    return llama_cpp_rows(gguf, tokenizer.encode(prefix), tokenizer.encode(suffix), torch.get_num_threads(),
                          SPAN_TOKENS, KEYSTROKES, extra_buffers)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def cpu_suite(path: Path, formats: list[str], with_ar: bool, gguf: Path | None = None,
              simulate: tuple[int, ...] = (), llama_cpp_extra_buffers: bool = True) -> str:
    """The table for each of `formats` (names --dtype takes; `auto` is reported as what it picked), with `gguf`
    (the same weights in Q8_0) llama.cpp's row and each format against it, and with `simulate` the cost
    simulation's break-even table for those tokens a pass."""
    device = torch.device("cpu")
    # First: a failure there fails fast.
    llama_cpp = _llama_cpp_ms(path, gguf, llama_cpp_extra_buffers) if gguf is not None else None
    chosen = (in_passing_thread(lambda: resolve_precision("auto", device, load_config(path))) if "auto" in formats
              else None)
    names = [chosen.name if name == "auto" and chosen else name for name in formats]
    unique = list(dict.fromkeys(names))
    # Compared with fp32's logits: every other format (fp32 against itself would cost a first pass for nothing).
    compared = [name for name in unique if name not in ("fp32", "float32")]
    reference = fp32_masked_logits(path) if compared else None
    measured = [measure_format(path, name, with_ar, reference if name in compared else None, simulate)
                for name in unique]
    rows = [row for row, _ in measured]
    qualities = [quality for _, quality in measured if quality is not None]
    header = f"auto picks {chosen.name}: {chosen.reason}\n" if chosen else ""
    table = header + format_cpu_table(rows)
    if qualities:
        table += "\n\nLogits at the span's masked positions against fp32's:\n" + format_quality_table(qualities)
    if llama_cpp is not None:
        cold_ms, typing_ms = llama_cpp
        plain = "" if llama_cpp_extra_buffers else ", no extra buffer types"
        lines = [f"llama.cpp Q8_0 ({gguf.name}, {torch.get_num_threads()} threads{plain}): cold {cold_ms:.0f} ms, "
                 f"typing {typing_ms:.0f} ms (median of {KEYSTROKES})",
                 "| weights | cold vs llama.cpp | typing vs llama.cpp |", "|---|---:|---:|"]
        lines += [f"| {row.precision.name} | {_ratio(row.diffusion.cold_ms, cold_ms)} "
                  f"| {_ratio(row.diffusion.typing_ms, typing_ms)} |" for row in rows]
        table += "\n\n" + "\n".join(lines)
    if simulate:
        table += "\n\n" + format_break_even_table(rows, llama_cpp)
    return table
