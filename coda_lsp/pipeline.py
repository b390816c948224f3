"""complete(document, cursor, settings) -> Completion: context -> trigger -> cache -> debounce -> engine -> filters."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

from coda_lsp.cache import CacheKey, CompletionCache
from coda_lsp.context import CompletionContext, TokenCounter, build_context
from coda_lsp.crossfile.service import CrossFile
from coda_lsp.documents import Document
from coda_lsp.filters import run_filters
from coda_lsp.filters.dedent_scope import scope_is_complete
from coda_lsp.loader import EngineUnavailable, ModelHost
from coda_lsp.settings import GenerationSettings, Settings
from coda_lsp.trigger import should_complete
from coda_lsp.worker import EngineWorker, StopCheck

logger = logging.getLogger(__name__)

LOAD_WAIT_S = 60.0  # a request that arrives while the model loads waits this long, then gets no completion
# Candidates of an invoked request when the user names no number. On a GPU they are rows of one batched call
# and cost little more than one; on the CPU the batch's rows cost their own compute, and the call runs until
# every row is done: 3 candidates took 3.5x as long as 1 (shipped model, bench samples, single- and multi-line).
GPU_CANDIDATES, CPU_CANDIDATES = 3, 1
# A canvas holds the prompt and the span; this many positions stay free so that tokenising the prefix and the
# suffix separately (a token or two more than the per-line counts) never overflows max_position_embeddings.
_POSITION_SLACK = 16
_MAX_EXPLAINED = 64  # documents whose last prompt coda/explainCompletion can show


@dataclass(frozen=True)
class Completion:
    texts: tuple[str, ...]  # distinct, best (greedy) first; empty when the filters discarded everything
    ctx: CompletionContext
    engine_ms: float        # time the engine spent on them; 0 for a cache hit


class Pipeline:
    """The completion pipeline as named stages; the LSP features call `complete` and shape its result."""

    def __init__(self, host: ModelHost, worker: EngineWorker, cache: CompletionCache,
                 cross_file: CrossFile | None = None) -> None:
        self.host = host
        self.worker = worker
        self.cache = cache
        self.cross_file = cross_file
        self.last_contexts: OrderedDict[str, CompletionContext] = OrderedDict()  # by uri, for explainCompletion
        self.num_engine_calls = 0
        self.num_warms = 0  # as-you-type requests that had the engine compute their canvas during the debounce
        self._counter: TokenCounter | None = None

    async def complete(self, doc: Document, offset: int, settings: Settings, *,
                       is_invoked: bool) -> Completion | None:
        """Completions at `offset`, or None when the model is unavailable or the trigger says no. An invoked
        request samples candidates to cycle through ("return multiple items to enable cycling", LSP 3.18; see
        invoked_candidates); an automatic one needs one."""
        engine = await self.host.wait(LOAD_WAIT_S)
        if engine is None:
            return None
        num_candidates = invoked_candidates(engine, settings.generation) if is_invoked else 1
        ctx = self.context(engine, doc, offset, settings)
        reason = should_complete(ctx, settings.trigger, is_invoked)
        if reason is not None:
            logger.debug("no completion at %s:%d: %s", doc.uri, offset, reason)
            return None
        # The snippets are part of what the engine reads, so they are part of the key.
        key = CacheKey(f"{ctx.language_id}|{num_candidates}|{settings.generation}|{ctx.cross_file.text}",
                       ctx.prefix, ctx.suffix)
        cached = self.cache.get(key)
        if cached is not None:
            return Completion(cached, ctx, 0.0)
        warm_ms = 0.0
        if not is_invoked and settings.trigger.debounce_ms:
            warm_ms = await self._debounce(engine, ctx, settings)
        try:
            raws, engine_ms = await self.worker.run(
                lambda stop: _infill(engine, ctx, settings.generation, num_candidates, stop))
        except EngineUnavailable as exc:  # --remote's server is down: no completion; the user was told once
            logger.debug("no completion at %s:%d: %s", doc.uri, offset, exc)
            return None
        engine_ms += warm_ms
        self.num_engine_calls += 1
        filtered = (run_filters(raw, ctx) for raw in raws)
        texts = tuple(dict.fromkeys(text for text in filtered if text))  # dict: distinct, order kept
        self.cache.put(key, texts)
        return Completion(texts, ctx, engine_ms)

    async def _debounce(self, engine: Any, ctx: CompletionContext, settings: Settings) -> float:
        """Wait out the debounce (a newer request for this document cancels this task meanwhile: LatestWins)
        while the engine computes the canvas's keys and values, which the infill then starts from, and a newer
        keystroke's canvas mostly shares. Returns the engine's milliseconds; a failed warm-up is left to the
        infill, which meets the same problem and reports it."""
        sleep = asyncio.sleep(settings.trigger.debounce_ms / 1000)
        if settings.generation.exact or not settings.generation.cache_reuse:
            await sleep
            return 0.0
        self.num_warms += 1
        _, warm = await asyncio.gather(sleep, self.worker.run(lambda stop: _warm(engine, ctx, settings.generation,
                                                                                 stop)),
                                       return_exceptions=True)
        if isinstance(warm, BaseException):
            logger.debug("warm-up failed, the infill will say why: %s", warm)
            return 0.0
        return warm

    @property
    def count_tokens(self) -> TokenCounter | None:
        """The model's per-line token counter, once the model has been asked for a context."""
        return self._counter

    def context(self, engine: Any, doc: Document, offset: int, settings: Settings) -> CompletionContext:
        if self._counter is None:
            self._counter = TokenCounter(engine.tokenizer)
        span = max(settings.generation.max_tokens, settings.generation.single_line_tokens)
        room = max(16, engine.config.max_position_embeddings - span - _POSITION_SLACK)
        ctx = self._with_cross_file(doc, offset, settings, room)
        self.last_contexts[doc.uri] = ctx
        self.last_contexts.move_to_end(doc.uri)
        while len(self.last_contexts) > _MAX_EXPLAINED:
            self.last_contexts.popitem(last=False)
        return ctx

    def _with_cross_file(self, doc: Document, offset: int, settings: Settings, room: int) -> CompletionContext:
        """The in-file context, after the cross-file snippets took at most their share of the budget: the
        total stays within contextTokens, and the share they leave unused goes to the prefix and suffix."""
        assert self._counter is not None
        cross = settings.cross_file
        if not cross.enabled or self.cross_file is None:
            return build_context(doc, offset, settings.context, self._counter, max_context_tokens=room)
        total = min(settings.context.context_tokens, room)
        prompt = self.cross_file.prompt(doc, offset, cross, int(total * cross.share), self._counter)
        ctx = build_context(doc, offset, settings.context, self._counter,
                            max_context_tokens=max(16, total - prompt.tokens))
        ctx = replace(ctx, cross_file=prompt)
        if cross.log_prompts:
            log_prompt(ctx)
        return ctx


def log_prompt(ctx: CompletionContext) -> None:
    parts = ", ".join(f"{p.snippet.kind} {p.snippet.path}:{p.snippet.start_line + 1}-{p.snippet.end_line + 1} "
                      f"({p.tokens} tokens, score {p.snippet.score})" for p in ctx.cross_file.snippets)
    logger.info("prompt for %s v%d: cross-file %d/%d tokens [%s]; prefix budget %d, suffix budget %d",
                ctx.uri, ctx.version, ctx.cross_file.tokens, ctx.cross_file.budget, parts or "no snippets",
                ctx.prefix_budget, ctx.suffix_budget)


def invoked_candidates(engine: Any, settings: GenerationSettings) -> int:
    """How many items an invoked request samples: the user's number, else by the engine's device."""
    if settings.num_candidates is not None:
        return settings.num_candidates
    return GPU_CANDIDATES if engine.device.type == "cuda" else CPU_CANDIDATES


def span_tokens(ctx: CompletionContext, settings: GenerationSettings) -> int:
    """Tokens the engine may write: a whole block needs more room than the rest of one line."""
    if ctx.scope.is_multiline:
        return settings.max_tokens
    return min(settings.single_line_tokens, settings.max_tokens)


def model_prefix(ctx: CompletionContext) -> str:
    """The prefix the engine sees. On a line holding only indentation the span starts at the line start: BPE
    splits spaces before code differently from trailing ones (`"        " + " self"` vs `"       " + " self"`),
    and infill spans start at line starts in training. The indentation filter then drops the first line's
    own indentation, since the cursor already sits after it."""
    if ctx.line_prefix and not ctx.line_prefix.strip() and ctx.prefix.endswith(ctx.line_prefix):
        return ctx.prefix[:len(ctx.prefix) - len(ctx.line_prefix)]
    return ctx.prefix


def _infill(engine: Any, ctx: CompletionContext, settings: GenerationSettings, num_candidates: int,
            should_stop: StopCheck) -> tuple[list[str], float]:
    """Engine calls on the engine thread: (raw texts, engine ms). The first candidate uses the configured
    temperature; the others sample at `candidate_temperature` with a fixed seed, so a repeated request gets the
    same alternatives. On the fast path all candidates are rows of one batch, which share the canvas's first
    (whole-canvas) pass. Raises coda_engine.Cancelled when stopped."""
    span = span_tokens(ctx, settings)
    steps = None if settings.steps is None else min(settings.steps, span)
    prefix = engine_prefix(ctx)
    temperatures = [settings.temperature] + [settings.candidate_temperature] * (num_candidates - 1)
    common = dict(max_new_tokens=span, steps=steps, alg=settings.alg, threshold=settings.threshold,
                  should_stop=should_stop)
    if settings.exact:
        results = [engine.infill(prefix, ctx.suffix, temperature=temperature, seed=index if index else None,
                                 exact=True, **common) for index, temperature in enumerate(temperatures)]
        return [r.text for r in results], sum(r.elapsed_ms for r in results)
    # Decoding stops once every candidate's text so far already decides what the filters keep: a single-line
    # completion needs nothing after its line break.
    results = engine.infill_candidates(prefix, ctx.suffix, temperatures, seed=0, block_size=settings.block_size,
                                       cache=cache_policy(settings),
                                       done_when=lambda text: scope_is_complete(text, ctx), **common)
    return [r.text for r in results], results[0].elapsed_ms


def _warm(engine: Any, ctx: CompletionContext, settings: GenerationSettings, should_stop: StopCheck) -> float:
    """Engine.warm on the canvas `_infill` will build, stopped between layers by a newer keystroke; its
    milliseconds."""
    return engine.warm(engine_prefix(ctx), ctx.suffix, span_tokens(ctx, settings), cache=cache_policy(settings),
                       should_stop=should_stop)


def engine_prefix(ctx: CompletionContext) -> str:
    """model_prefix, never empty. The model predicts position i from position i-1, so a span cannot start a
    canvas: at the very start of a file the engine gets one newline before the cursor, which reads as "a file
    starting here". Cross-file snippets come first; they end with the current file's header line."""
    return ctx.cross_file.text + model_prefix(ctx) or "\n"


def cache_policy(settings: GenerationSettings) -> Any:
    """The fast path's cache policy with the user's refresh rule and reuse."""
    from coda_engine.engine import FAST

    return replace(FAST.cache, refresh=settings.cache_refresh, reuse=settings.cache_reuse)
