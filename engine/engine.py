"""Engine: load a checkpoint once, lay out canvases, and run infills: alone (a direct call), or set up as runs
that the scheduler decodes pass by pass beside other jobs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from .blockwise import BlockwiseRun, BlockwiseTrace, FinishCheck, run_alone
from .cache import CanvasCache, KVCache, Prefill, prefill_from
from .checkpoint import load_weights
from .config import ModelConfig, load_config
from .errors import Cancelled, CheckpointError, one_line
from .generate import PadTail, SamplingParams, StepCallback, StopCheck, denoise, masked_logits, reference_logits
from .jobs import InfillJob, TextCheck, canvas_prefix
from .kernels.choice import KernelChoice, choose_kernels
from .model import CodaModel, Window
from .params import EngineOptions, InfillParams
from .precision import Precision, resolve_precision
from .quantize import Int8Linear
from .threads import in_passing_thread
from .tokenizer import Tokenizer, load_tokenizer

log = logging.getLogger("coda_engine")


@dataclass(frozen=True)
class InfillResult:
    """One direct infill: the text between prefix and suffix, and what it cost (cache_bytes: 0 on the exact
    path)."""

    text: str
    token_ids: list[int]
    num_forward_passes: int
    elapsed_ms: float
    tokens_per_step: list[int]
    cache_bytes: int = 0
    window_rows: tuple[int, ...] = ()  # fast path: positions each window pass computed


def resolve_device(device: str | torch.device) -> torch.device:
    """"auto" -> the first CUDA device when there is one, else the CPU; other names as torch reads them."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {device!r}; expected auto, cpu, cuda or cuda:N") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but this machine has no CUDA device; use --device cpu")
    return resolved


def fast_sampling(params: InfillParams, span: int) -> SamplingParams:
    """The fast path's per-pass sampling settings for a span of `span` tokens (each row's temperature is its
    own: BlockwiseRun's row_temperatures)."""
    return SamplingParams(params.num_steps(span), params.alg, 0.0, params.top_p, params.top_k, None, params.eps,
                          params.reveal_bar if params.alg == "threshold" else None, params.window)


def load_model(folder: Path, config: ModelConfig, device: torch.device, precision: Precision) -> CodaModel:
    """Build the model on the meta device, then assign the checkpoint's (memory-mapped) weights; in int8 every
    linear layer, the vocabulary head included, is quantized as it is read."""
    with torch.device("meta"):
        model = CodaModel(config)
    int8 = tuple(f"{name}.weight" for name, module in model.named_modules()
                 if isinstance(module, torch.nn.Linear)) if precision.int8 else ()
    load_weights(model, folder, dtype=precision.compute, device=device,
                 tie_head_when_absent=config.tie_word_embeddings, int8=int8,
                 column_major=("lm_head.weight",) if column_major_head(precision, device) else ())
    return model.eval()


def column_major_head(precision: Precision, device: torch.device) -> bool:
    """Whether the vocabulary head is stored column-major (the same [V, D] values, transposed in memory): for
    fp32 on the CPU, where MKL multiplies the few still-masked rows of a pass by a column-major weight faster
    (docs/engine.md, "Weight formats"). bf16 runs slower that way and CUDA gains nothing; an int8 head is stored
    as Int8Linear wants."""
    return device.type == "cpu" and precision.name == "float32"


class InfillRun:
    """A fast-path job set up by Engine.start: the block-wise run that decodes it, and what keeping its cache and
    rebuilding it (after the kernels turned off) need."""

    def __init__(self, build: Callable[[Engine], BlockwiseRun], engine: Engine, canvas_ids: list[int],
                 span: tuple[int, int]) -> None:
        self.build, self.canvas_ids, self.span = build, canvas_ids, span
        self.blockwise = build(engine)

    @property
    def done(self) -> bool:
        return self.blockwise.done

    @property
    def first_pass(self) -> bool:
        return self.blockwise.first_pass

    @property
    def passes(self) -> int:
        return self.blockwise.trace.num_forward_passes

    @property
    def reused(self) -> int:
        return self.blockwise.prefill.reused if self.blockwise.prefill is not None else 0

    def next_window(self) -> Window | None:
        return self.blockwise.next_window()

    def apply(self, hidden: torch.Tensor) -> None:
        self.blockwise.apply(hidden)

    def again(self, engine: Engine) -> InfillRun:
        """The same job from the start (its prefill is copied again from the kept canvas, which is intact)."""
        return InfillRun(self.build, engine, self.canvas_ids, self.span)

    def kept(self) -> CanvasCache | None:
        """The canvas and cache (its first row) for a later job's reuse; None before a pass has finished."""
        trace = self.blockwise.trace
        if not trace.num_forward_passes:
            return None
        return kept_canvas(self.canvas_ids, self.span, trace.cache, trace.stale, self.blockwise.prefill)

    def span_rows(self) -> list[list[int]]:
        """Each row's span tokens so far."""
        return self.blockwise.trace.canvas[:, self.span[0]:self.span[1]].tolist()


class WarmRun:
    """A warm-up's one pass, in InfillRun's shape: the canvas's keys and values outside the reused cache,
    nothing revealed."""

    def __init__(self, canvas: torch.Tensor, canvas_ids: list[int], span: tuple[int, int], cache: KVCache,
                 prefill: Prefill | None) -> None:
        self.canvas, self.canvas_ids, self.span, self.cache, self.prefill = canvas, canvas_ids, span, cache, prefill
        self.done = False

    @property
    def first_pass(self) -> bool:
        return not self.done

    @property
    def passes(self) -> int:
        return int(self.done)

    @property
    def reused(self) -> int:
        return self.prefill.reused if self.prefill is not None else 0

    def next_window(self) -> Window | None:
        if self.done:
            return None
        start, end = self.prefill.window if self.prefill is not None else (0, len(self.canvas_ids))
        return Window(self.canvas[:, start:end], self.cache, start, slice(0, 0))

    def apply(self, hidden: torch.Tensor) -> None:
        self.done = True

    def again(self, engine: Engine) -> WarmRun:
        return self

    def kept(self) -> CanvasCache | None:
        return kept_canvas(self.canvas_ids, self.span, self.cache, (0, 0), self.prefill) if self.done else None

    def span_rows(self) -> list[list[int]]:
        return []


Run = InfillRun | WarmRun


def kept_canvas(canvas_ids: list[int], span: tuple[int, int], cache: KVCache, stale: tuple[int, int],
                prefill: Prefill | None) -> CanvasCache:
    return CanvasCache(tuple(canvas_ids), span, cache.first_rows(1), stale, prefill.reuses if prefill is not None else 0)


class Engine:
    """A loaded model plus its tokenizer. Not thread-safe: one thread runs it (the scheduler's, or a direct
    caller's).

    `kernels`: the fast path's Triton-or-torch choice for the model's device, made at construction by
    CODA_KERNELS's rule (kernels.choice; a one-line ValueError where `triton` is forced and cannot run). In the
    `auto` mode a kernel that fails during a call turns the kernels off for good (fall_back): the call is run
    again on the torch path and `kernels.reason` says what failed."""

    def __init__(self, model: CodaModel, tokenizer: Tokenizer, path: Path, options: EngineOptions = EngineOptions(),
                 precision: Precision | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.path = path
        self.options = options
        self.config: ModelConfig = model.config
        self.mask_token_id = tokenizer.mask_token_id
        if self.mask_token_id != self.config.mask_token_id:
            raise CheckpointError(path / "config.json", f"mask_token_id {self.config.mask_token_id} disagrees with "
                                                        f"the tokenizer's <|mask|> id {self.mask_token_id}")
        self.kernels: KernelChoice = choose_kernels(self.device, options.kernels)
        # How the weights are held (and why); derived from the model when the caller built it itself.
        self.precision = precision or Precision("int8" if isinstance(model.lm_head, Int8Linear) else
                                                str(self.dtype).removeprefix("torch."), self.dtype, "as built")

    @property
    def device(self) -> torch.device:
        return self.model.model.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype of activations and of the weights not held in int8."""
        return self.model.compute_dtype

    @classmethod
    def from_pretrained(cls, path: str | Path, options: EngineOptions | None = None, **overrides: Any) -> Engine:
        """Load an HF-format CoDA (or Qwen3) folder; every problem with it raises one CheckpointError. `overrides`
        replace fields of `options` (EngineOptions: device, dtype, kernels and the scheduler's settings). The
        loading runs on a thread of its own, so the caller's thread never runs torch's parallel kernels (see
        threads.py)."""
        return in_passing_thread(lambda: cls._load(Path(path), replace(options or EngineOptions(), **overrides)))

    @classmethod
    def _load(cls, folder: Path, options: EngineOptions) -> Engine:
        if not folder.is_dir():
            raise CheckpointError(folder, "model folder not found" if not folder.exists() else "not a folder")
        device = resolve_device(options.device)
        config = load_config(folder)
        precision = resolve_precision(options.dtype, device, config)
        tokenizer = load_tokenizer(folder)
        return cls(load_model(folder, config, device, precision), tokenizer, folder, options, precision)

    def warm_up(self, spans: Sequence[int] = (InfillParams.block_size,), candidate_temperature: float = 0.8) -> None:
        """Pay at load for what the first completion would otherwise pay. On the torch path that is allocator
        and thread-pool set-up: one tiny infill. On the kernel path it is Triton compiling each kernel variant
        at its first launch (1-2 s each): for each span length a completion will use, one greedy and one
        sampled row, one pass per block, launch every variant such a completion does (block widths, greedy and
        sampled confidence). A failure there falls back as any call's does (see the class). On a thread of its
        own, as loading is (see threads.py)."""
        in_passing_thread(lambda: self._warm_up(spans, candidate_temperature))

    def _warm_up(self, spans: Sequence[int], candidate_temperature: float) -> None:
        if not self.kernels.use_triton:
            self.infill("\n", "", 2, InfillParams(steps=1))
            return
        for span in sorted(set(spans)):
            params = InfillParams(steps=-(-span // min(InfillParams.block_size, span)))
            self.run(InfillJob("\n", "", span, params, (0.0, candidate_temperature), seed=0))

    def forward_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, L) ids -> (B, L, V) raw, unshifted logits, as CoDA's model returns them."""
        input_ids = self._as_batch(input_ids)
        self._check_length(input_ids.shape[1])
        with torch.inference_mode():
            return self.model.logits(input_ids)

    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, params: SamplingParams, *,
                 generator: torch.Generator | None = None, should_stop: StopCheck | None = None,
                 on_step: StepCallback | None = None, reference: bool = False) -> torch.Tensor:
        """CoDA's `diffusion_generate`: append `max_new_tokens` masks (masks inside the prompt are filled too).

        `reference=True` runs the plain loop (full vocabulary projection at every position, every step); the
        default projects only masked positions and stops once the canvas is full. Both give the same tokens.
        """
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        prompt = self._as_batch(input_ids)
        masks = torch.full((prompt.shape[0], max_new_tokens), self.mask_token_id, dtype=torch.long,
                           device=self.device)
        canvas = torch.cat([prompt, masks], dim=1)
        self._check_length(canvas.shape[1])
        trace = denoise(self.model, canvas, self.mask_token_id, params,
                        logits_at_masks=reference_logits if reference else masked_logits,
                        generator=generator, should_stop=should_stop, on_step=on_step)
        return trace.canvas

    def infill(self, prefix: str, suffix: str, max_new_tokens: int = 64, params: InfillParams = InfillParams(),
               temperature: float = 0.0, seed: int | None = None, *, should_stop: StopCheck | None = None,
               on_step: StepCallback | None = None, done_when: TextCheck | None = None) -> InfillResult:
        """Fill up to `max_new_tokens` tokens between `prefix` and `suffix`, alone (the scheduler runs jobs beside
        each other; this is the direct call tools and checks use).

        The span is an upper bound: the model ends it with a tail of pad and end tokens (generate.PadTail), which
        is dropped from the text; `params.variable_length=False` forbids those tokens, so the model must write
        exactly `max_new_tokens` tokens. `done_when(text)` (fast path): whether the span's text so far, its tokens
        up to the first one still masked, is all the caller will use (a single-line completion whose line has
        ended); decoding then stops. Tokens are never changed once revealed, so that text is what a full run
        would have started with. Raises Cancelled when `should_stop()` turns True between passes."""
        job = InfillJob(prefix, suffix, max_new_tokens, params, (temperature,), seed, done_when=done_when)
        return self.run(job, should_stop=should_stop, on_step=on_step)[0]

    def run(self, job: InfillJob, *, should_stop: StopCheck | None = None,
            on_step: StepCallback | None = None) -> list[InfillResult]:
        """A job decoded alone, one result per row, each with the whole call's elapsed_ms: on the fast path its
        rows share one batch (row i samples from seed + i, so a candidate does not depend on the others), on the
        exact path they run one after another. A kernel failing on the fast path turns the kernels off and the job
        runs again on the torch path (fall_back)."""
        if job.is_warm_up:
            raise ValueError("the span must hold at least one token (max_tokens 0, a warm-up, only computes a cache "
                             "for later jobs: submit it to a Scheduler)")
        if job.params.exact:
            return [self._infill_exact(job.prefix, job.suffix, job.max_tokens, job.params, temperature,
                                       None if job.seed is None else job.seed + row, should_stop, on_step)
                    for row, temperature in enumerate(job.temperatures)]
        started = time.perf_counter()
        run = self.start(job, on_step=on_step)
        assert isinstance(run, InfillRun)
        while True:
            try:
                trace = run_alone(run.blockwise, should_stop)
                break
            except Cancelled:  # the caller's stop, not a kernel's failure
                raise
            except Exception as exc:
                if not self.fall_back(exc):
                    raise
                run = run.again(self)
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        return [self._result(row, run.span, trace, elapsed_ms) for row in trace.canvas]

    def layout(self, prefix: str, suffix: str, span: int) -> tuple[list[int], tuple[int, int]]:
        """The canvas ids of an infill (its prefix, `span` masks, its suffix) and the span's positions."""
        if isinstance(span, bool) or not isinstance(span, int) or span < 1:
            raise ValueError(f"the span must hold at least one token, got {span!r}")
        prefix_ids = self.tokenizer.encode(canvas_prefix(prefix))
        canvas_ids = prefix_ids + [self.mask_token_id] * span + self.tokenizer.encode(suffix)
        self._check_length(len(canvas_ids))
        return canvas_ids, (len(prefix_ids), len(prefix_ids) + span)

    def start(self, job: InfillJob, previous: CanvasCache | None = None,
              on_step: StepCallback | None = None) -> Run | None:
        """A fast-path job set up but not decoded: its canvas, its cache prefilled from `previous` (an earlier
        job's kept canvas) where the policy allows, and the run that decodes it pass by pass (alone, or beside
        other jobs' runs: batching.shared_pass). A warm-up's run computes the canvas of `options.warm_span`
        masks; None when there is nothing to do (`previous` already is that canvas's fresh cache)."""
        if job.params.exact:
            raise ValueError("an exact job runs alone (Engine.infill with exact=True), not pass by pass")
        if job.is_warm_up:
            return self._start_warm(job, previous)
        params, span_length = job.params, job.max_tokens
        canvas_ids, span = self.layout(job.prefix, job.suffix, span_length)
        block_size = min(params.block_size, span_length)
        sampling = fast_sampling(params, span_length)
        canvas = torch.tensor([canvas_ids], dtype=torch.long, device=self.device)
        fillers = tuple(sorted(self.tokenizer.filler_token_ids))
        rows, text_check = len(job.temperatures), job.text_check()

        def build(engine: Engine) -> BlockwiseRun:
            return BlockwiseRun(
                engine.model, canvas.repeat(rows, 1), span, engine.mask_token_id, sampling, block_size, params.cache,
                prefill=engine._prefill(canvas_ids, span, rows, params, previous), reveal_bar=params.reveal_bar,
                row_temperatures=job.temperatures,
                generator=[None if job.seed is None else engine._generator(job.seed + row) for row in range(rows)],
                on_step=on_step, is_finished=None if text_check is None else engine._finish_check(text_check),
                suppressed_token_ids=() if params.variable_length else fillers,
                pad_tail=PadTail(fillers, engine.tokenizer.pad_token_id) if params.variable_length else None,
                use_kernels=engine.kernels.use_triton)

        return InfillRun(build, self, canvas_ids, span)

    def span_text(self, span_ids: list[int]) -> tuple[str, int]:
        """A span's text up to its first still-masked position, without the pad tail, and its token count."""
        revealed = [t for t in span_ids[:self._revealed_run(span_ids)] if t not in self.tokenizer.filler_token_ids]
        return self.tokenizer.decode(revealed), len(revealed)

    def fall_back(self, error: Exception) -> bool:
        """Whether a fast job that raised `error` should run again on the torch path: it ran the kernels under
        the `auto` rule and the error is not one of the caller's input (ValueError) or of memory, which the
        torch path would meet too. If so, the kernels are off from now on, with the reason logged once."""
        if not (self.kernels.use_triton and self.kernels.mode == "auto"):
            return False
        if isinstance(error, (ValueError, torch.cuda.OutOfMemoryError)):
            return False
        reason = f"a kernel failed during a call: {one_line(error, typed=True)}"
        log.warning("Triton kernels turned off on %s, using the torch path: %s", self.device, reason)
        self.kernels = KernelChoice(False, self.kernels.mode, reason)
        return True

    def _start_warm(self, job: InfillJob, previous: CanvasCache | None) -> WarmRun | None:
        if not job.params.cache.reuse:
            return None
        canvas_ids, span = self.layout(job.prefix, job.suffix, self.options.warm_span)
        if previous is not None and previous.is_fresh_for(canvas_ids):
            return None
        prefill = self._prefill(canvas_ids, span, 1, job.params, previous)
        cache = prefill.cache if prefill is not None else KVCache.allocate(self.config, 1, len(canvas_ids),
                                                                           self.device, self.dtype)
        canvas = torch.tensor([canvas_ids], dtype=torch.long, device=self.device)
        return WarmRun(canvas, canvas_ids, span, cache, prefill)

    def _infill_exact(self, prefix: str, suffix: str, max_new_tokens: int, params: InfillParams, temperature: float,
                      seed: int | None, should_stop: StopCheck | None, on_step: StepCallback | None) -> InfillResult:
        started = time.perf_counter()
        sampling = SamplingParams(params.num_steps(max_new_tokens), params.alg, temperature, params.top_p,
                                  params.top_k, params.alg_temp, params.eps, params.threshold, params.window)
        canvas_ids, span = self.layout(prefix, suffix, max_new_tokens)
        fillers = tuple(sorted(self.tokenizer.filler_token_ids))
        trace = denoise(self.model, torch.tensor([canvas_ids], device=self.device), self.mask_token_id, sampling,
                        generator=self._generator(seed), should_stop=should_stop, on_step=on_step,
                        suppressed_token_ids=() if params.variable_length else fillers,
                        pad_tail=PadTail(fillers, self.tokenizer.pad_token_id) if params.variable_length else None)
        written = trace.canvas[0, span[0]:span[1]].tolist()
        return InfillResult(self.span_text(written)[0], written, trace.num_forward_passes,
                            (time.perf_counter() - started) * 1000.0, trace.tokens_per_step, 0)

    def _result(self, row: torch.Tensor, span: tuple[int, int], trace: BlockwiseTrace,
                elapsed_ms: float) -> InfillResult:
        written = row[span[0]:span[1]].tolist()
        return InfillResult(self.span_text(written)[0], written, trace.num_forward_passes, elapsed_ms,
                            trace.tokens_per_step, trace.cache_bytes, tuple(trace.window_rows))

    def _generator(self, seed: int | None) -> torch.Generator | None:
        return None if seed is None else torch.Generator(device=self.device).manual_seed(seed)

    def _prefill(self, ids: list[int], span: tuple[int, int], batch: int, params: InfillParams,
                 previous: CanvasCache | None) -> Prefill | None:
        """The cache of an earlier job's canvas carried over to this one, when the policy allows another reuse
        in a row and at least half of the canvas is shared; None: the first pass computes everything."""
        policy = params.cache
        if not policy.reuse or previous is None or previous.reuses_after(ids) > policy.reuse:
            return None
        return prefill_from(previous, ids, span, batch, self.model.shift_keys)

    def _revealed_run(self, span_ids: list[int]) -> int:
        """How many of a span's tokens come before the first one still masked."""
        return span_ids.index(self.mask_token_id) if self.mask_token_id in span_ids else len(span_ids)

    def _finish_check(self, done_when: TextCheck) -> FinishCheck:
        """BlockwiseRun's is_finished from a check on text: every row's text so far passes `done_when`. A row is
        decoded again only when its leading revealed run has grown."""
        verdicts: dict[int, tuple[int, bool]] = {}  # row -> (leading tokens revealed, verdict)

        def is_finished(span_tokens: torch.Tensor) -> bool:
            for row, ids in enumerate(span_tokens.tolist()):
                revealed = self._revealed_run(ids)
                if verdicts.get(row, (-1, False))[0] != revealed:
                    verdicts[row] = (revealed, done_when(self.span_text(ids)[0]))
            return all(verdict for _, verdict in verdicts.values())

        return is_finished

    def _as_batch(self, input_ids: torch.Tensor | list[int]) -> torch.Tensor:
        ids = torch.as_tensor(input_ids, dtype=torch.long, device=self.device)
        if ids.dim() == 1:
            ids = ids[None, :]
        if ids.dim() != 2 or ids.shape[1] == 0:
            raise ValueError(f"input_ids must be a non-empty (B, L) tensor, got shape {tuple(ids.shape)}")
        if int(ids.min()) < 0 or int(ids.max()) >= self.config.vocab_size:
            raise ValueError(f"input_ids must lie in [0, {self.config.vocab_size})")
        return ids

    def _check_length(self, length: int) -> None:
        limit = self.config.max_position_embeddings
        if length > limit:
            raise ValueError(f"the canvas has {length} tokens, more than max_position_embeddings ({limit})")
