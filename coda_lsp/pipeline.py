"""complete(document, cursor, settings) -> Completion: context -> trigger -> cache -> debounce -> job -> filters,
then the work ahead of the user: the completion that follows accepting this one, and a focused cursor's canvas."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass, replace

from coda_engine.jobs import InfillJob, InfillOutcome, Priority
from coda_engine.params import SERVED, InfillParams
from coda_lsp.backend import Backend, BackendUnavailable
from coda_lsp.cache import CacheKey, CompletionCache
from coda_lsp.context import CompletionContext, TokenCounter, build_context
from coda_lsp.crossfile.service import CrossFile
from coda_lsp.documents import Document
from coda_lsp.filters import run_filters
from coda_lsp.filters.dedent_scope import scope_is_complete
from coda_lsp.items import insert_text
from coda_lsp.loader import ModelHost
from coda_lsp.settings import GenerationSettings, Settings
from coda_lsp.trigger import should_complete

logger = logging.getLogger(__name__)

LOAD_WAIT_S = 60.0  # a request that arrives while the model loads waits this long, then gets no completion
# Candidates of an invoked request when the user names no number. On a GPU they are rows of one batched pass
# and cost little more than one; on the CPU each row costs its own compute (docs/engine.md).
GPU_CANDIDATES, CPU_CANDIDATES = 3, 1
# A canvas holds the prompt and the span; this many positions stay free so that tokenising the prefix and the
# suffix separately (a token or two more than the per-line counts) never overflows the model's positions.
POSITION_SLACK = 16
FOCUS_REST_S = 0.3  # a focused cursor's canvas is computed once the cursor has rested this long
_MAX_EXPLAINED = 64  # documents whose last prompt coda/explainCompletion can show


@dataclass(frozen=True)
class Completion:
    texts: tuple[str, ...]  # distinct, best (greedy) first; empty when the filters discarded everything
    ctx: CompletionContext
    engine_ms: float        # time the model spent on them; 0 for a cache hit


@dataclass
class AheadCounts:
    """What the work ahead of the user came to, in this server (coda/status)."""

    prepared: int = 0        # completions prepared for after an accept
    answered: int = 0        # requests answered from one (from the cache, or by joining it in flight)
    focus_warms: int = 0     # canvases computed for a focused cursor


class Pipeline:
    """The completion pipeline as named stages; the LSP features call `complete` and shape its result."""

    def __init__(self, host: ModelHost, cache: CompletionCache, cross_file: CrossFile | None = None) -> None:
        self.host = host
        self.cache = cache
        self.cross_file = cross_file
        self.last_contexts: OrderedDict[str, CompletionContext] = OrderedDict()  # by uri, for explainCompletion
        self.num_engine_calls = 0
        self.num_warms = 0  # automatic requests whose canvas the model computed during the debounce
        self.ahead = AheadCounts()
        self._prepared: dict[str, tuple[str, asyncio.Task[None]]] = {}  # uri -> (job key, its task)
        self._focus: dict[str, asyncio.Task[None]] = {}  # uri -> the pending focus warm-up
        self.count_tokens: TokenCounter | None = None  # the model's per-line counter, from the first context on

    async def complete(self, doc: Document, offset: int, settings: Settings, *,
                       is_invoked: bool) -> Completion | None:
        """Completions at `offset`, or None when the model is unavailable or the trigger says no. An invoked
        request samples candidates to cycle through ("return multiple items to enable cycling", LSP 3.18; see
        invoked_candidates); an automatic one needs one."""
        backend = await self.host.wait(LOAD_WAIT_S)
        if backend is None:
            return None
        num_candidates = invoked_candidates(backend, settings.generation) if is_invoked else 1
        ctx = self.context(backend, doc, offset, settings)
        reason = should_complete(ctx, settings.trigger, is_invoked)
        if reason is not None:
            logger.debug("no completion at %s:%d: %s", doc.uri, offset, reason)
            return None
        key = cache_key(ctx, num_candidates, settings.generation)
        cached = self.cache.get(key)
        prepared = self._prepared.get(doc.uri)
        is_prepared = prepared is not None and prepared[0] == key.digest
        if cached is not None:
            self.ahead.answered += is_prepared
            return Completion(cached, ctx, 0.0)
        # Cycling starts from the ghost text already shown here, and only the other candidates are decoded: the
        # greedy row of a batch could come out otherwise (other shapes, other roundings, another cache).
        shown = (self.cache.get(cache_key(ctx, 1, settings.generation), count=False) or ())[:1] \
            if num_candidates > 1 else ()
        job = infill_job(ctx, settings.generation, num_candidates, key.digest, greedy=not shown)
        warm_ms = 0.0
        if is_prepared:  # being prepared ahead: join it (the scheduler raises its priority) rather than wait
            self.ahead.answered += 1
        elif not is_invoked and settings.trigger.debounce_ms:
            warm_ms = await self._debounce(backend, job, settings)
        try:
            outcome = await backend.infill(job)
        except BackendUnavailable as exc:  # --remote's server is down: no completion; the user was told once
            logger.debug("no completion at %s:%d: %s", doc.uri, offset, exc)
            return None
        self.num_engine_calls += 1
        texts = self._keep(key, outcome, ctx, shown)
        if texts and settings.trigger.prefetch_next and backend.works_ahead and not settings.generation.exact:
            self._prepare_next(backend, doc, ctx, texts[0], settings)
        return Completion(texts, ctx, outcome.prompt_ms + outcome.predicted_ms + warm_ms)

    def focus(self, doc: Document, offset: int, settings: Settings) -> None:
        """A cursor the user looks at (a document focused, the cursor moved): once it has rested FOCUS_REST_S,
        compute its canvas ahead of the user, so that the first keystroke there starts from it instead of a
        cold first pass over the whole context. A newer focus of the document replaces this one."""
        backend = self.host.backend
        if backend is None or not backend.works_ahead or not settings.trigger.warm_on_focus or \
                settings.generation.exact or not settings.generation.cache_reuse:
            return
        previous = self._focus.pop(doc.uri, None)
        if previous is not None:
            previous.cancel()
        task = asyncio.create_task(self._warm_on_focus(backend, doc, offset, settings))
        self._focus[doc.uri] = task
        task.add_done_callback(lambda done: self._focus.pop(doc.uri, None) if self._focus.get(doc.uri) is done
                               else None)

    async def _warm_on_focus(self, backend: Backend, doc: Document, offset: int, settings: Settings) -> None:
        await asyncio.sleep(FOCUS_REST_S)
        ctx = self.context(backend, doc, offset, settings, explained=False)
        job = replace(infill_job(ctx, settings.generation, 1, None), max_tokens=0, priority=Priority.AHEAD,
                      done_when=None)
        try:
            outcome = await backend.infill(job)
        except Exception as exc:  # work ahead fails quietly: the request it prepares reports the problem
            logger.debug("focus warm-up of %s failed: %s", doc.uri, exc)
            return
        self.ahead.focus_warms += outcome.passes > 0

    async def _debounce(self, backend: Backend, job: InfillJob, settings: Settings) -> float:
        """Wait out the debounce (a newer request for this document cancels this task meanwhile: LatestWins)
        while the model computes the canvas's keys and values, which the job then starts from, and a newer
        keystroke's canvas mostly shares. Returns the model's milliseconds; a failed warm-up is left to the job,
        which meets the same problem and reports it."""
        sleep = asyncio.sleep(settings.trigger.debounce_ms / 1000)
        if settings.generation.exact or not settings.generation.cache_reuse:
            await sleep
            return 0.0
        self.num_warms += 1
        _, warm = await asyncio.gather(sleep, backend.infill(replace(job, max_tokens=0, key=None, done_when=None)),
                                       return_exceptions=True)
        if isinstance(warm, BaseException):
            logger.debug("warm-up failed, the job will say why: %s", warm)
            return 0.0
        return warm.prompt_ms

    def _keep(self, key: CacheKey, outcome: InfillOutcome, ctx: CompletionContext,
              first: tuple[str, ...] = ()) -> tuple[str, ...]:
        """`first`, then the outcome's texts after the filters, distinct, best first, and cached under `key`."""
        filtered = (run_filters(raw, ctx) for raw in outcome.texts)
        texts = tuple(dict.fromkeys(text for text in (*first, *filtered) if text))  # dict: distinct, order kept
        self.cache.put(key, texts)
        return texts

    def _prepare_next(self, backend: Backend, doc: Document, ctx: CompletionContext, shown: str,
                      settings: Settings) -> None:
        """Work ahead of the user (llama.vim's speculative FIM): the completion a request at the end of `shown`
        would get once it is accepted, computed below every request and cached, so that accepting and going on
        is answered at once (or joins the job still in flight). It replaces the document's earlier one."""
        inserted = insert_text(shown, ctx)
        accepted = Document(doc.uri, doc.language_id, doc.version, doc.text[:ctx.offset] + inserted +
                            doc.text[ctx.offset:])
        next_ctx = self.context(backend, accepted, ctx.offset + len(inserted), settings, explained=False)
        if should_complete(next_ctx, settings.trigger, is_invoked=False) is not None:
            return
        key = cache_key(next_ctx, 1, settings.generation)
        if self.cache.get(key, count=False) is not None:
            return
        previous = self._prepared.pop(doc.uri, None)
        if previous is not None:
            previous[1].cancel()
        job = replace(infill_job(next_ctx, settings.generation, 1, key.digest), priority=Priority.AHEAD)
        self._prepared[doc.uri] = (key.digest, asyncio.create_task(self._prepare(backend, job, key, next_ctx)))
        self.ahead.prepared += 1

    async def _prepare(self, backend: Backend, job: InfillJob, key: CacheKey, ctx: CompletionContext) -> None:
        try:
            self._keep(key, await backend.infill(job), ctx)
        except Exception as exc:  # work ahead fails quietly: the request it prepares reports the problem
            logger.debug("preparing the next completion failed: %s", exc)

    def context(self, backend: Backend, doc: Document, offset: int, settings: Settings,
                explained: bool = True) -> CompletionContext:
        """The context the model sees at `offset`, within the model's positions; `explained`: the one
        coda/explainCompletion shows for the document."""
        if self.count_tokens is None:
            self.count_tokens = TokenCounter(backend.tokenizer)
        span = max(settings.generation.max_tokens, settings.generation.single_line_tokens)
        room = max(16, backend.max_positions - span - POSITION_SLACK)
        ctx = self._with_cross_file(doc, offset, settings, room)
        if explained:
            self.last_contexts[doc.uri] = ctx
            self.last_contexts.move_to_end(doc.uri)
            while len(self.last_contexts) > _MAX_EXPLAINED:
                self.last_contexts.popitem(last=False)
        return ctx

    def _with_cross_file(self, doc: Document, offset: int, settings: Settings, room: int) -> CompletionContext:
        """The in-file context, after the cross-file snippets took at most their share of the budget: the
        total stays within contextTokens, and the share they leave unused goes to the prefix and suffix."""
        assert self.count_tokens is not None
        cross = settings.cross_file
        if not cross.enabled or self.cross_file is None:
            return build_context(doc, offset, settings.context, self.count_tokens, max_context_tokens=room)
        total = min(settings.context.context_tokens, room)
        prompt = self.cross_file.prompt(doc, offset, cross, int(total * cross.share), self.count_tokens)
        ctx = build_context(doc, offset, settings.context, self.count_tokens,
                            max_context_tokens=max(16, total - prompt.tokens))
        ctx = replace(ctx, cross_file=prompt)
        if cross.log_prompts:
            log_prompt(ctx)
        return ctx

    def close(self) -> None:
        """Withdraw the work ahead still in flight."""
        for task in [*self._focus.values(), *(task for _, task in self._prepared.values())]:
            task.cancel()


def log_prompt(ctx: CompletionContext) -> None:
    parts = ", ".join(f"{p.snippet.kind} {p.snippet.path}:{p.snippet.start_line + 1}-{p.snippet.end_line + 1} "
                      f"({p.tokens} tokens, score {p.snippet.score})" for p in ctx.cross_file.snippets)
    logger.info("prompt for %s v%d: cross-file %d/%d tokens [%s]; prefix budget %d, suffix budget %d",
                ctx.uri, ctx.version, ctx.cross_file.tokens, ctx.cross_file.budget, parts or "no snippets",
                ctx.prefix_budget, ctx.suffix_budget)


def invoked_candidates(backend: Backend, settings: GenerationSettings) -> int:
    """How many items an invoked request samples: the user's number, else by where the model runs."""
    if settings.num_candidates is not None:
        return settings.num_candidates
    return GPU_CANDIDATES if backend.device.startswith("cuda") else CPU_CANDIDATES


def cache_key(ctx: CompletionContext, num_candidates: int, settings: GenerationSettings) -> CacheKey:
    """Everything that changes the answer. The snippets are part of what the model reads, so part of the key; the
    candidate settings only where there are candidates (the user's number is `num_candidates` itself)."""
    answer = replace(settings, num_candidates=None,
                     candidate_temperature=settings.candidate_temperature if num_candidates > 1 else 0.0)
    return CacheKey(f"{ctx.language_id}|{num_candidates}|{answer}|{ctx.cross_file.text}", ctx.prefix, ctx.suffix)


def infill_job(ctx: CompletionContext, settings: GenerationSettings, num_candidates: int,
               key: str | None, greedy: bool = True) -> InfillJob:
    """The job of a completion at `ctx`. The first candidate uses the configured temperature; the others sample
    at `candidate_temperature` from fixed seeds, so a repeated request gets the same alternatives (`greedy`
    False: those alternatives only, the first being known already; its key says so). Decoding stops
    once every candidate's text so far already decides what the filters keep: a single-line completion needs
    nothing after its line break. The document is the client whose kept canvases the job starts from."""
    span = span_tokens(ctx, settings)
    temperatures = (settings.temperature,) * greedy + (settings.candidate_temperature,) * (num_candidates - 1)
    return InfillJob(model_prefix(ctx, with_cross_file=True), ctx.suffix, span, infill_params(settings, span),
                     temperatures, seed=0 if greedy else 1, client=ctx.uri,
                     key=key if greedy or key is None else f"{key}:alternatives",
                     done_when=lambda text: scope_is_complete(text, ctx))


def infill_params(settings: GenerationSettings, span: int) -> InfillParams:
    """How the user's settings decode: the servers' fast path with their overrides, or CoDA's exact loop."""
    if settings.exact:
        return InfillParams(steps=None if settings.steps is None else min(settings.steps, span), alg=settings.alg,
                            threshold=settings.threshold, exact=True)
    return replace(SERVED, steps=None if settings.steps is None else min(settings.steps, span), alg=settings.alg,
                   threshold=settings.threshold, block_size=settings.block_size or SERVED.block_size,
                   cache=replace(SERVED.cache, refresh=settings.cache_refresh, reuse=settings.cache_reuse))


def span_tokens(ctx: CompletionContext, settings: GenerationSettings) -> int:
    """Tokens the model may write: a whole block needs more room than the rest of one line."""
    if ctx.scope.is_multiline:
        return settings.max_tokens
    return min(settings.single_line_tokens, settings.max_tokens)


def model_prefix(ctx: CompletionContext, with_cross_file: bool = False) -> str:
    """The prefix the model sees (after the cross-file snippets, which end with the current file's header line).
    On a line holding only indentation the span starts at the line start: BPE splits spaces before code
    differently from trailing ones (`"        " + " self"` vs `"       " + " self"`), and infill spans start at
    line starts in training. The indentation filter then drops the first line's own indentation, since the
    cursor already sits after it."""
    prefix = ctx.prefix
    if ctx.line_prefix and not ctx.line_prefix.strip() and prefix.endswith(ctx.line_prefix):
        prefix = prefix[:len(prefix) - len(ctx.line_prefix)]
    return ctx.cross_file.text + prefix if with_cross_file else prefix
