"""Engine: load a checkpoint once, then score canvases, generate after prompts, and infill between prefix and suffix."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .blockwise import BlockwiseRun, BlockwiseTrace, FinishCheck, run_alone
from .cache import CachePolicy, CanvasCache, KVCache, Prefill, check_block_size, prefill_from
from .checkpoint import load_weights
from .config import ModelConfig, load_config
from .errors import Cancelled, CheckpointError
from .generate import (PadTail, SamplingParams, StepCallback, StopCheck, denoise, masked_logits,
                       reference_logits)
from .kernels.choice import KernelChoice, choose_kernels
from .model import CodaModel, Window
from .precision import Precision, resolve_precision
from .quantize import Int8Linear
from .sampling import Algorithm
from .tokenizer import Tokenizer, load_tokenizer

# An infill's text so far -> whether it is all the caller needs (Engine.infill's done_when).
TextCheck = Callable[[str], bool]
log = logging.getLogger("coda_engine")


@dataclass(frozen=True)
class InfillResult:
    """One infill: the text between prefix and suffix, and what it cost (cache_bytes: 0 on the exact path)."""

    text: str
    token_ids: list[int]
    num_forward_passes: int
    elapsed_ms: float
    tokens_per_step: list[int]
    cache_bytes: int = 0


@dataclass(frozen=True)
class FastDefaults:
    """The fast path's settings when the caller names none, chosen by measurement on the shipped model's harness
    (docs/engine.md, "Fast infill"): entropy order (the exact loop's, so answers mostly agree with it; ranking by the
    top probability agreed on 11 of 400 problems), plus every position at least `threshold` sure (parallel
    reveals), at least `tokens_per_step` a pass; blocks of `block_size` left to right over the cache, never
    refreshed but with a 16-token margin recomputed around the block (40 problems agreeing with the exact loop:
    no margin 23, margin 16 32, a refresh every pass 38; of the first 100 single-line ones, 24 tokens: margin 0
    45, 4 63, 8 66, 16 73). On the CPU a pass also leaves out the block's settled positions (skip_settled): 74
    of those 100 agreed with the exact loop, 98 answers were the default's without it, and window passes
    computed 52.1 rows against 55.4."""

    alg: str = "entropy"
    threshold: float = 0.9
    tokens_per_step: int = 1
    block_size: int = 32
    cache: CachePolicy = CachePolicy(refresh="none", margin=16, skip_settled=True)

    def steps(self, max_new_tokens: int, block_size: int) -> int:
        num_blocks = -(-max_new_tokens // block_size)
        return max(num_blocks, -(-max_new_tokens // self.tokens_per_step))


FAST = FastDefaults()


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
    fp32 on the CPU. The fast path projects the few still-masked rows of a block per pass, and MKL multiplies
    so few fp32 rows by a column-major weight faster: 18 rows by the 152k x 512 head 42-50 ms row-major against
    31-35 ms, the `small` bench's fast path 1.60 s against 1.27 s (measured; the values agree to fp32
    rounding). bf16 runs slower that way and CUDA gains nothing; an int8 head is stored as Int8Linear wants."""
    return device.type == "cpu" and precision.name == "float32"


def kept_canvas(canvas_ids: list[int], span: tuple[int, int], cache: KVCache, stale: tuple[int, int],
                prefill: Prefill | None) -> CanvasCache:
    """A fast call's canvas and cache (its first row), kept for a later call's reuse."""
    return CanvasCache(tuple(canvas_ids), span, cache.first_rows(1), stale, prefill.reuses if prefill is not None else 0)


@dataclass
class InfillRun:
    """An infill set up by Engine.start_infill: the block-wise run that decodes it, and what keeping its cache
    and rebuilding it need. `build(engine)` makes the run again from the start (after the kernels turned off)."""

    blockwise: BlockwiseRun
    build: Callable[["Engine"], BlockwiseRun]
    canvas_ids: list[int]
    span: tuple[int, int]
    policy: CachePolicy
    started: float

    @property
    def done(self) -> bool:
        return self.blockwise.done

    def again(self, engine: "Engine") -> "InfillRun":
        return InfillRun(self.build(engine), self.build, self.canvas_ids, self.span, self.policy, self.started)

    def kept(self, trace: BlockwiseTrace) -> CanvasCache:
        return kept_canvas(self.canvas_ids, self.span, trace.cache, trace.stale, self.blockwise.prefill)


@dataclass
class WarmRun:
    """Engine.warm's one pass, in BlockwiseRun's shape (next_window, apply, done) so that shared passes can run
    it beside infills: the canvas's keys and values outside the reused cache, nothing revealed."""

    canvas: torch.Tensor
    canvas_ids: list[int]
    span: tuple[int, int]
    cache: KVCache
    prefill: Prefill | None
    done: bool = False

    @property
    def first_pass(self) -> bool:
        return not self.done

    def next_window(self) -> Window | None:
        if self.done:
            return None
        start, end = self.prefill.window if self.prefill is not None else (0, len(self.canvas_ids))
        return Window(self.canvas[:, start:end], self.cache, start, slice(0, 0))

    def apply(self, hidden: torch.Tensor | None) -> None:
        self.done = True

    def kept(self) -> CanvasCache:
        return kept_canvas(self.canvas_ids, self.span, self.cache, (0, 0), self.prefill)


class Engine:
    """A loaded model plus its tokenizer. Not thread-safe: callers serialise requests (the server uses one worker).

    `kernels`: the fast path's Triton-or-torch choice for the model's device, made at construction by
    CODA_KERNELS's rule (kernels.choice; a one-line ValueError where `triton` is forced and cannot run). In the
    `auto` mode a kernel that fails during a call turns the kernels off for good: the call is run again on the
    torch path and `kernels.reason` says what failed."""

    def __init__(self, model: CodaModel, tokenizer: Tokenizer, path: Path, kernels: str | None = None,
                 precision: Precision | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.path = path
        self.config: ModelConfig = model.config
        self.mask_token_id = tokenizer.mask_token_id
        # The last fast call's canvas and cache, for a policy with `reuse` (see cache.CanvasCache).
        self.last_canvas: CanvasCache | None = None
        if self.mask_token_id != self.config.mask_token_id:
            raise CheckpointError(path / "config.json", f"mask_token_id {self.config.mask_token_id} disagrees with "
                                                        f"the tokenizer's <|mask|> id {self.mask_token_id}")
        self.kernels: KernelChoice = choose_kernels(self.device, kernels)
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
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu",
                        dtype: torch.dtype | str | None = None, kernels: str | None = None) -> "Engine":
        """Load an HF-format CoDA (or Qwen3) folder; every problem with it raises one CheckpointError.
        `device="auto"` picks CUDA when present, else the CPU. `dtype`: fp32, bf16, fp16, int8 (CPU: every
        linear layer quantized at load) or auto (the CPU's fastest, see precision.py); None: fp32 on the CPU,
        bf16 on CUDA. `kernels`: auto, triton or torch (None: CODA_KERNELS, default auto)."""
        folder = Path(path)
        if not folder.is_dir():
            raise CheckpointError(folder, "model folder not found" if not folder.exists() else "not a folder")
        device = resolve_device(device)
        config = load_config(folder)
        precision = resolve_precision(dtype, device, config)
        tokenizer = load_tokenizer(folder)
        return cls(load_model(folder, config, device, precision), tokenizer, folder, kernels, precision)

    def warm_up(self, spans: Sequence[int] = (FAST.block_size,), candidate_temperature: float = 0.8) -> None:
        """Pay at load for what the first completion would otherwise pay. On the torch path that is allocator
        and thread-pool set-up: one tiny infill. On the kernel path it is Triton compiling each kernel variant
        at its first launch (1-2 s each): for each span length a completion will use, one greedy and one
        sampled row, one pass per block, launch every variant such a completion does (block widths, greedy and
        sampled confidence). A failure there falls back as any call's does (see the class)."""
        if not self.kernels.use_triton:
            self.infill("\n", "", max_new_tokens=2, steps=1)
            return
        for span in sorted(set(spans)):
            blocks = -(-span // min(FAST.block_size, span))
            self.infill_candidates("\n", "", (0.0, candidate_temperature), max_new_tokens=span, steps=blocks, seed=0)

    def forward_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, L) ids -> (B, L, V) raw, unshifted logits, as CoDA's model returns them."""
        input_ids = self._as_batch(input_ids)
        self._check_length(input_ids.shape[1])
        with torch.inference_mode():
            return self.model.logits(input_ids)

    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, steps: int, alg: Algorithm = "entropy",
                 temperature: float = 0.0, top_p: float | None = None, top_k: int | None = None,
                 alg_temp: float | None = None, eps: float = 1e-3, threshold: float | None = None,
                 generator: torch.Generator | None = None, should_stop: StopCheck | None = None,
                 on_step: StepCallback | None = None, reference: bool = False) -> torch.Tensor:
        """CoDA's `diffusion_generate`: append `max_new_tokens` masks (masks inside the prompt are filled too).

        `reference=True` runs the plain loop (full vocabulary projection at every position, every step); the
        default projects only masked positions and stops once the canvas is full. Both give the same tokens.
        """
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        params = SamplingParams(steps, alg, temperature, top_p, top_k, alg_temp, eps, threshold)
        prompt = self._as_batch(input_ids)
        masks = torch.full((prompt.shape[0], max_new_tokens), self.mask_token_id, dtype=torch.long,
                           device=self.device)
        canvas = torch.cat([prompt, masks], dim=1)
        self._check_length(canvas.shape[1])
        trace = denoise(self.model, canvas, self.mask_token_id, params,
                        logits_at_masks=reference_logits if reference else masked_logits,
                        generator=generator, should_stop=should_stop, on_step=on_step)
        return trace.canvas

    def infill(self, prefix: str, suffix: str, max_new_tokens: int = 64, steps: int | None = None,
               alg: Algorithm | None = None, temperature: float = 0.0, top_p: float | None = None,
               top_k: int | None = None, alg_temp: float | None = None, eps: float = 1e-3,
               threshold: float | None = None, seed: int | None = None, should_stop: StopCheck | None = None,
               on_step: StepCallback | None = None, variable_length: bool = True,
               window: int | None = None, exact: bool = False, block_size: int | None = None,
               cache: CachePolicy | None = None, done_when: TextCheck | None = None) -> InfillResult:
        """Fill up to `max_new_tokens` tokens between `prefix` and `suffix`.

        The default is the fast path: block-wise threshold decoding over the approximate key/value cache, with
        FAST's settings for whatever is not given. There `threshold` applies to every `alg`: besides the
        schedule's quota in the algorithm's order, every position whose token is at least that probable is
        revealed (1.0 turns these parallel reveals off). `exact=True` runs CoDA's reference loop instead (no cache, the
        given `alg` and `steps`, by default entropy and one token per step) and takes no cache options.

        The span is an upper bound: the model ends it with a tail of pad and end tokens (generate.PadTail), which
        is dropped from the text. `variable_length=False` forbids those tokens, so the model must write exactly
        `max_new_tokens` tokens (the fixed-length infill that models without a learned pad tail are limited to).

        `done_when(text)` (fast path): whether the span's text so far, its tokens up to the first one still
        masked, is all the caller will use (a single-line completion whose line has ended). Decoding stops once it
        holds for every row; tokens are never changed once revealed, so that text is what a full run would have
        started with.
        """
        if exact:
            if block_size is not None or cache is not None or done_when is not None:
                raise ValueError("exact=True runs CoDA's reference loop unchanged: drop block_size, cache and "
                                 "done_when")
            return self._infill_exact(prefix, suffix, max_new_tokens, steps, alg or "entropy", temperature, top_p,
                                      top_k, alg_temp, eps, threshold, seed, should_stop, on_step, variable_length,
                                      window)
        return self.infill_candidates(prefix, suffix, (temperature,), max_new_tokens, steps, alg, top_p, top_k,
                                      alg_temp, eps, threshold, seed, should_stop, on_step, variable_length, window,
                                      block_size, cache, done_when)[0]

    def infill_candidates(self, prefix: str, suffix: str, temperatures: Sequence[float], max_new_tokens: int = 64,
                          steps: int | None = None, alg: Algorithm | None = None, top_p: float | None = None,
                          top_k: int | None = None, alg_temp: float | None = None, eps: float = 1e-3,
                          threshold: float | None = None, seed: int | None = None,
                          should_stop: StopCheck | None = None, on_step: StepCallback | None = None,
                          variable_length: bool = True, window: int | None = None, block_size: int | None = None,
                          cache: CachePolicy | None = None, done_when: TextCheck | None = None) -> list[InfillResult]:
        """One infill per temperature, decoded together on the fast path as rows of one batch: the canvas is
        shared, so the first (whole-canvas) pass is paid once. Row i samples from seed + i, so a candidate does
        not depend on the others. Each result's elapsed_ms is the whole call's. `done_when`: see infill."""
        run = self.start_infill(prefix, suffix, temperatures, max_new_tokens, steps, alg, top_p, top_k, alg_temp, eps,
                                threshold, seed, on_step, variable_length, window, block_size, cache, done_when,
                                previous=self.last_canvas)
        while True:
            try:
                trace = run_alone(run.blockwise, should_stop)
                break
            except Cancelled as cancelled:
                # A call stopped by a newer keystroke still leaves a cache the newer call can start from.
                if run.policy.reuse and cancelled.partial is not None and cancelled.partial.num_forward_passes:
                    self.last_canvas = run.kept(cancelled.partial)
                raise
            except Exception as exc:
                if not self._fall_back_from(exc):
                    raise
                # The failed run wrote into its prefilled cache; the kept one it was copied from is intact.
                run = run.again(self)
        if run.policy.reuse:
            self.last_canvas = run.kept(trace)
        return self.results(run)

    def start_infill(self, prefix: str, suffix: str, temperatures: Sequence[float], max_new_tokens: int = 64,
                     steps: int | None = None, alg: Algorithm | None = None, top_p: float | None = None,
                     top_k: int | None = None, alg_temp: float | None = None, eps: float = 1e-3,
                     threshold: float | None = None, seed: int | None = None, on_step: StepCallback | None = None,
                     variable_length: bool = True, window: int | None = None, block_size: int | None = None,
                     cache: CachePolicy | None = None, done_when: TextCheck | None = None,
                     previous: CanvasCache | None = None) -> "InfillRun":
        """infill_candidates's call set up but not decoded: its canvas, its cache prefilled from `previous` (an
        earlier call's kept canvas) where the policy allows, and the block-wise run that decodes it pass by
        pass (alone, or with other calls' runs in shared passes: batching.py)."""
        if not temperatures:
            raise ValueError("temperatures needs at least one entry")
        alg = alg or FAST.alg
        reveal_bar = FAST.threshold if threshold is None else threshold
        if not 0 < reveal_bar <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {reveal_bar}")
        self._check_span(max_new_tokens)
        # A block wider than the span is the whole span.
        block_size = min(check_block_size(FAST.block_size if block_size is None else block_size), max_new_tokens)
        steps = FAST.steps(max_new_tokens, block_size) if steps is None else steps
        if steps > max_new_tokens:
            raise ValueError(f"steps ({steps}) must not exceed the span ({max_new_tokens} tokens)")
        params = SamplingParams(steps, alg, 0.0, top_p, top_k, alg_temp, eps,
                                reveal_bar if alg == "threshold" else None, window)
        canvas, span = self._canvas(prefix, suffix, max_new_tokens)
        policy = cache or FAST.cache
        canvas_ids = canvas[0].tolist()
        fillers = tuple(sorted(self.tokenizer.filler_token_ids))

        def build(engine: "Engine") -> BlockwiseRun:
            prefill = engine._prefill(canvas_ids, span, len(temperatures), policy, previous)
            return BlockwiseRun(
                engine.model, canvas.repeat(len(temperatures), 1), span, engine.mask_token_id, params, block_size,
                policy, prefill=prefill, reveal_bar=reveal_bar, row_temperatures=temperatures,
                generator=[None if seed is None else engine._generator(seed + row)
                           for row in range(len(temperatures))],
                on_step=on_step, is_finished=None if done_when is None else engine._finish_check(done_when),
                suppressed_token_ids=() if variable_length else fillers,
                pad_tail=PadTail(fillers, engine.tokenizer.pad_token_id) if variable_length else None,
                use_kernels=engine.kernels.use_triton)

        return InfillRun(build(self), build, canvas_ids, span, policy, time.perf_counter())

    def results(self, run: "InfillRun") -> list[InfillResult]:
        """A finished (or stopped) run's one result per row, each row's text up to its first still-masked
        position; elapsed_ms is the whole call's."""
        trace = run.blockwise.finish()
        elapsed_ms = (time.perf_counter() - run.started) * 1000.0
        return [self._result(row, run.span, trace.num_forward_passes, elapsed_ms, trace.tokens_per_step,
                             trace.cache_bytes) for row in trace.canvas]

    def warm(self, prefix: str, suffix: str, max_new_tokens: int = 64, cache: CachePolicy | None = None,
             should_stop: StopCheck | None = None) -> float:
        """Compute and keep the keys and values of the canvas `infill` would build (one forward pass, nothing
        revealed), so that the next fast call on the same prefix, span and suffix starts from them and its first
        pass covers only the block. The server runs it while an as-you-type request waits out its debounce.
        Does nothing without a `reuse` policy (reuse is what reads the kept cache). Returns the milliseconds it
        took. `should_stop` is asked between layers; Cancelled then leaves the kept cache as it was."""
        if not (cache or FAST.cache).reuse:
            return 0.0
        started = time.perf_counter()
        run = self.start_warm(prefix, suffix, max_new_tokens, cache, self.last_canvas)
        if run is not None:
            window = run.next_window()
            assert window is not None
            with torch.inference_mode():
                self.model([window], None, should_stop)
            run.apply(None)
            self.last_canvas = run.kept()
        return (time.perf_counter() - started) * 1000.0

    def start_warm(self, prefix: str, suffix: str, max_new_tokens: int = 64, cache: CachePolicy | None = None,
                   previous: CanvasCache | None = None) -> "WarmRun | None":
        """Engine.warm's pass set up but not run, starting from `previous`; None when there is nothing to do (no
        `reuse` policy, or `previous` already is this canvas's fresh cache)."""
        policy = cache or FAST.cache
        if not policy.reuse:
            return None
        self._check_span(max_new_tokens)
        canvas, span = self._canvas(prefix, suffix, max_new_tokens)
        canvas_ids = canvas[0].tolist()
        if previous is not None and previous.is_fresh_for(canvas_ids):
            return None
        prefill = self._prefill(canvas_ids, span, 1, policy, previous)
        kv = prefill.cache if prefill is not None else KVCache.allocate(self.config, 1, len(canvas_ids),
                                                                        self.device, self.dtype)
        return WarmRun(canvas, canvas_ids, span, kv, prefill)

    def _fall_back_from(self, error: Exception) -> bool:
        """Whether a fast call that raised `error` should run again on the torch path: it ran the kernels under
        the `auto` rule and the error is not one of the caller's input (ValueError) or of memory, which the
        torch path would meet too. If so, the kernels are off from now on, with the reason logged once."""
        if not (self.kernels.use_triton and self.kernels.mode == "auto"):
            return False
        if isinstance(error, (ValueError, torch.cuda.OutOfMemoryError)):
            return False
        message = str(error).strip().splitlines()
        reason = f"a kernel failed during a call: {type(error).__name__}: {message[0] if message else 'no message'}"
        log.warning("Triton kernels turned off on %s, using the torch path: %s", self.device, reason)
        self.kernels = KernelChoice(False, self.kernels.mode, reason)
        return True

    def _infill_exact(self, prefix: str, suffix: str, max_new_tokens: int, steps: int | None, alg: Algorithm,
                      temperature: float, top_p: float | None, top_k: int | None, alg_temp: float | None, eps: float,
                      threshold: float | None, seed: int | None, should_stop: StopCheck | None,
                      on_step: StepCallback | None, variable_length: bool, window: int | None) -> InfillResult:
        started = time.perf_counter()
        self._check_span(max_new_tokens)
        steps = max_new_tokens if steps is None else steps
        if steps > max_new_tokens:
            raise ValueError(f"steps ({steps}) must not exceed the span ({max_new_tokens} tokens)")
        params = SamplingParams(steps, alg, temperature, top_p, top_k, alg_temp, eps, threshold, window)
        canvas, span = self._canvas(prefix, suffix, max_new_tokens)
        fillers = tuple(sorted(self.tokenizer.filler_token_ids))
        trace = denoise(self.model, canvas, self.mask_token_id, params, generator=self._generator(seed),
                        should_stop=should_stop, on_step=on_step,
                        suppressed_token_ids=() if variable_length else fillers,
                        pad_tail=PadTail(fillers, self.tokenizer.pad_token_id) if variable_length else None)
        return self._result(trace.canvas[0], span, trace.num_forward_passes,
                            (time.perf_counter() - started) * 1000.0, trace.tokens_per_step, 0)

    def layout(self, prefix: str, suffix: str, max_new_tokens: int) -> tuple[list[int], tuple[int, int]]:
        """The canvas ids infill would build (prefix, the span's masks, suffix) and the span's positions."""
        self._check_span(max_new_tokens)
        canvas, span = self._canvas(prefix, suffix, max_new_tokens)
        return canvas[0].tolist(), span

    def span_text(self, span_ids: list[int]) -> tuple[str, int]:
        """A span's text up to its first still-masked position, without the pad tail, and its token count."""
        revealed = [t for t in span_ids[:self._revealed_run(span_ids)] if t not in self.tokenizer.filler_token_ids]
        return self.tokenizer.decode(revealed), len(revealed)

    def _check_span(self, max_new_tokens: int) -> None:
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"the span must hold at least one token, got max_new_tokens={max_new_tokens}")

    def _canvas(self, prefix: str, suffix: str, max_new_tokens: int) -> tuple[torch.Tensor, tuple[int, int]]:
        """The (1, L) canvas (prefix, `max_new_tokens` masks, suffix) and the span of its masks."""
        prefix_ids = self.tokenizer.encode(prefix)
        if not prefix_ids:
            # Position i is predicted from position i-1, so the first position of a canvas can never be written.
            raise ValueError("the prefix is empty: the model needs at least one token before the span")
        canvas_ids = prefix_ids + [self.mask_token_id] * max_new_tokens + self.tokenizer.encode(suffix)
        self._check_length(len(canvas_ids))
        span = (len(prefix_ids), len(prefix_ids) + max_new_tokens)
        return torch.tensor([canvas_ids], dtype=torch.long, device=self.device), span

    def _generator(self, seed: int | None) -> torch.Generator | None:
        return None if seed is None else torch.Generator(device=self.device).manual_seed(seed)

    def _result(self, row: torch.Tensor, span: tuple[int, int], num_forward_passes: int, elapsed_ms: float,
                tokens_per_step: list[int], cache_bytes: int) -> InfillResult:
        written = row[span[0]:span[1]].tolist()
        return InfillResult(text=self._span_text(written), token_ids=written,
                            num_forward_passes=num_forward_passes, elapsed_ms=elapsed_ms,
                            tokens_per_step=tokens_per_step, cache_bytes=cache_bytes)

    def _prefill(self, ids: list[int], span: tuple[int, int], batch: int, policy: CachePolicy,
                 previous: CanvasCache | None) -> Prefill | None:
        """The cache of an earlier call's canvas carried over to this one, when the policy allows another reuse
        in a row and at least half of the canvas is shared; None: the first pass computes everything."""
        if not policy.reuse or previous is None or previous.reuses_after(ids) > policy.reuse:
            return None
        return prefill_from(previous, ids, span, batch, self.model.shift_keys)

    def _revealed_run(self, span_ids: list[int]) -> int:
        """How many of a span's tokens come before the first one still masked."""
        return span_ids.index(self.mask_token_id) if self.mask_token_id in span_ids else len(span_ids)

    def _span_text(self, span_ids: list[int]) -> str:
        """The text of a span's tokens up to the first one still masked (all of them once decoding finished),
        without the pad tail."""
        revealed = span_ids[:self._revealed_run(span_ids)]
        return self.tokenizer.decode([t for t in revealed if t not in self.tokenizer.filler_token_ids])

    def _finish_check(self, done_when: TextCheck) -> FinishCheck:
        """denoise_blockwise's is_finished from a check on text: every row's text so far passes `done_when`. A
        row is decoded again only when its leading revealed run has grown."""
        verdicts: dict[int, tuple[int, bool]] = {}  # row -> (leading tokens revealed, verdict)

        def is_finished(span_tokens: torch.Tensor) -> bool:
            for row, ids in enumerate(span_tokens.tolist()):
                revealed = self._revealed_run(ids)
                if verdicts.get(row, (-1, False))[0] != revealed:
                    verdicts[row] = (revealed, done_when(self._span_text(ids)))
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
