"""create_app(backend_factory, settings) -> FastAPI: llama-server's /infill, OpenAI's /v1/completions, health,
models, props and metrics, in front of one Backend that loads in a thread after startup.

Failures never take the server down: a bad request is a 4xx naming its field, a busy backend a 503 with
Retry-After, anything else a 500 with one line (logged once). A client that goes away cancels its job, which the
backend stops within one pass."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from coda_engine.errors import Overloaded, one_line
from coda_engine.jobs import InfillJob, InfillOutcome, PassObserver
from coda_lsp import __version__
from coda_lsp.backend import Backend
from coda_lsp.context import TokenCounter
from coda_lsp.serve.errors import ApiError, native_body, openai_body
from coda_lsp.serve.metrics import CONTENT_TYPE, ServeMetrics
from coda_lsp.serve.prompt import Prompt, build_prompt
from coda_lsp.serve.requests import CompletionRequest, parse_infill, parse_openai
from coda_lsp.serve.responses import (StreamText, completions, dumps, native_result, openai_chunk,
                                      openai_result, select_fields)
from coda_lsp.serve.settings import ServeSettings

logger = logging.getLogger(__name__)

BackendFactory = Callable[[PassObserver], Backend]
CLIENT_GONE = 499  # nginx's "client closed request": counted in the metrics, never sent
_FINISHED = object()  # the queue's end marker: the infill task is done


class CompactJSON(Response):
    """JSON on one line without spaces (see responses.dumps)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content).encode("utf-8")


class BackendHost:
    """The backend once loaded in its thread; until then "loading", and "error" with a one-line reason after a
    failed load."""

    def __init__(self, factory: BackendFactory, observer: PassObserver) -> None:
        self.factory = factory
        self.observer = observer
        self.state = "loading"
        self.backend: Backend | None = None
        self.error: str | None = None
        self.counter: TokenCounter | None = None
        self._closed = False

    def start(self) -> None:
        threading.Thread(target=self._load, name="coda-load", daemon=True).start()

    def _load(self) -> None:
        started = time.perf_counter()
        try:
            backend = self.factory(self.observer)
        except Exception as exc:  # CheckpointError, OSError, a CUDA error: health reports it, the server stays up
            self.error, self.state = one_line(exc, typed=True), "error"
            logger.error("the model did not load: %s", self.error)
            logger.debug("load failure", exc_info=True)
            return
        self.counter = TokenCounter(backend.tokenizer)
        self.backend = backend
        self.state = "ready"
        logger.info("model %s ready in %.1f s", backend.model_name, time.perf_counter() - started)
        if self._closed:  # the server stopped while the model loaded
            backend.close()

    def ready(self) -> Backend:
        if self.backend is not None:
            return self.backend
        raise ApiError(503, self.error or "Loading model")

    def close(self) -> None:
        self._closed = True
        if self.backend is not None:
            self.backend.close()


def create_app(backend_factory: BackendFactory, settings: ServeSettings) -> FastAPI:
    metrics = ServeMetrics()
    host = BackendHost(backend_factory, metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        host.start()
        yield
        host.close()

    # No generated docs routes: the API is llama-server's and OpenAI's, documented by them.
    app = FastAPI(title="coda-lsp serve", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.host = host
    app.state.metrics = metrics
    service = Service(settings, host, metrics)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """Unknown routes (404) and methods (405) in the route's error shape."""
        return service.error_response(request, ApiError(exc.status_code, f"{request.method} {request.url.path}: "
                                                        f"{exc.detail}"))

    @app.get("/health")
    @app.get("/v1/health")
    async def health(request: Request) -> Response:
        return await service.answer(request, "health", service.health)

    @app.get("/v1/models")
    @app.get("/models")
    async def models(request: Request) -> Response:
        return await service.answer(request, "models", service.models)

    @app.get("/props")
    async def props(request: Request) -> Response:
        return await service.answer(request, "props", service.props)

    @app.get("/tokenizer")
    async def tokenizer(request: Request) -> Response:
        return await service.answer(request, "tokenizer", service.tokenizer_json)

    @app.get("/metrics")
    async def prometheus(request: Request) -> Response:
        return await service.answer(request, "metrics", service.metrics_text)

    @app.post("/infill")
    async def infill(request: Request) -> Response:
        return await service.answer(request, "infill", service.infill)

    @app.post("/v1/completions")
    async def openai_completions(request: Request) -> Response:
        return await service.answer(request, "completions", service.openai_completions)

    return app


class Service:
    """The endpoints' work; the routes above only name them."""

    def __init__(self, settings: ServeSettings, host: BackendHost, metrics: ServeMetrics) -> None:
        self.settings = settings
        self.host = host
        self.metrics = metrics
        self.created = int(time.time())
        self._key = settings.api_key.encode("utf-8") if settings.api_key is not None else None
        self._tokenizer_json: str | None = None

    # ---- common to every route -------------------------------------------------------------------------------

    async def answer(self, request: Request, endpoint: str,
                     work: Callable[[Request], Awaitable[Response]]) -> Response:
        """`work`'s response, or the error it raised in the route's shape; counted in the metrics (a stream when
        its last event is out)."""
        started = time.perf_counter()
        try:
            response = await work(request)
        except ApiError as error:
            response = self.error_response(request, error)
        except Exception as exc:  # a bug or a backend failure: one line to the client and the log, never a crash
            logger.error("%s %s failed: %s", request.method, request.url.path, one_line(exc, typed=True))
            logger.debug("failure", exc_info=True)
            response = self.error_response(request, ApiError(500, one_line(exc, typed=True)))
        if isinstance(response, StreamingResponse):
            response.body_iterator = self._counted(response.body_iterator, endpoint, started)
        else:
            self.metrics.request_done(endpoint, response.status_code, time.perf_counter() - started)
        return response

    async def _counted(self, events: Any, endpoint: str, started: float) -> AsyncIterator[Any]:
        status = CLIENT_GONE
        try:
            async for event in events:
                yield event
            status = 200
        finally:
            self.metrics.request_done(endpoint, status, time.perf_counter() - started)

    def error_response(self, request: Request, error: ApiError) -> Response:
        body = openai_body(error) if request.url.path.startswith("/v1/") else native_body(error)
        if error.status >= 500:
            logger.debug("%s %s: %d %s", request.method, request.url.path, error.status, error.message)
        return CompactJSON(body, status_code=error.status, headers=error.headers)

    def authorize(self, request: Request) -> None:
        """With a key set: `Authorization: Bearer KEY` (or llama-server's `X-Api-Key`), compared in constant time.
        Without one any header passes: llama.vim always sends `Bearer ` with its empty default key."""
        if self._key is None:
            return
        header = request.headers.get("authorization", "")
        sent = header[len("bearer "):] if header[:7].lower() == "bearer " else request.headers.get("x-api-key", "")
        if not hmac.compare_digest(sent.strip().encode("utf-8"), self._key):
            raise ApiError(401, "Invalid API Key")

    async def read_json(self, request: Request) -> dict[str, Any]:
        """The body as a JSON object, read no further than max_body_bytes (Content-Length is checked first, and
        then the bytes that actually arrive: a chunked body has no length)."""
        cap = self.settings.max_body_bytes
        too_large = ApiError(413, f"the request body is larger than {cap // 1024} KiB (--max-body-kb)")
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > cap:
            raise too_large
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > cap:
                raise too_large
            chunks.append(chunk)
        try:
            body = json.loads(b"".join(chunks))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, f"the request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        return body

    def client_key(self, request: Request, id_slot: int | None) -> str:
        """Whose cached canvases a job may reuse: the key's identity (a hash, never the key), the client's address
        and the slot it names. Editors send one request at a time per buffer and llama.vim and llama.vscode
        always name slot 0, so a client's as-you-type requests share one cache line and clients never share."""
        key = ""
        if self._key is not None:
            key = hashlib.sha256(self._key).hexdigest()[:12]
        address = request.client.host if request.client else "?"
        return f"{key}|{address}|{'' if id_slot is None else id_slot}"

    # ---- plain routes ----------------------------------------------------------------------------------------

    async def health(self, _: Request) -> Response:
        self.host.ready()
        return CompactJSON({"status": "ok"})

    async def models(self, _: Request) -> Response:
        backend = self.host.ready()
        return CompactJSON({"object": "list", "data": [{"id": backend.model_name, "object": "model",
                                                         "created": self.created, "owned_by": "coda-lsp"}]})

    async def props(self, request: Request) -> Response:
        self.authorize(request)
        backend = self.host.ready()
        return CompactJSON({
            "default_generation_settings": {"n_ctx": backend.max_positions, "n_predict": self.settings.max_tokens,
                                            "temperature": 0.0, "model": backend.model_name},
            # not llama-server's: where the model runs (cuda, cpu), for `coda-lsp --remote`'s status
            "device": backend.device,
            "total_slots": backend.describe().get("maxRows", 1),
            "model_path": str(self.settings.model_path or backend.model_name),
            "build_info": f"coda-lsp {__version__}", "is_sleeping": False,
        })

    async def tokenizer_json(self, request: Request) -> Response:
        """The model's tokenizer as one tokenizer.json (not llama-server's): `coda-lsp --remote` counts context
        tokens with it exactly as the server will, without a copy of the model."""
        self.authorize(request)
        backend = self.host.ready()
        if self._tokenizer_json is None:
            self._tokenizer_json = await asyncio.to_thread(backend.tokenizer.backend.to_str)
        return Response(self._tokenizer_json, media_type="application/json")

    async def metrics_text(self, request: Request) -> Response:
        self.authorize(request)
        return Response(self.metrics.exposition(), media_type=CONTENT_TYPE)

    # ---- completions -----------------------------------------------------------------------------------------

    async def infill(self, request: Request) -> Response:
        arrived = time.monotonic()
        self.authorize(request)
        backend = self.host.ready()
        completion = parse_infill(await self.read_json(request), self.settings)
        prompt, job = await self.job(request, backend, completion, id_slot=completion.id_slot, arrived=arrived)
        id_slot = max(completion.id_slot, 0)

        def results(outcome: InfillOutcome) -> list[dict[str, Any]]:
            answers = completions(outcome, completion.stop, job.max_tokens, len(job.temperatures))
            self.metrics.predicted(sum(a.tokens_predicted for a in answers))
            return [select_fields(native_result(index, answer, outcome, model=backend.model_name, id_slot=id_slot,
                                                truncated=prompt.truncated), completion.response_fields)
                    for index, answer in enumerate(answers)]

        if completion.stream:
            def event(row: int, delta: str) -> str:
                return dumps({"index": row, "content": delta, "tokens": [], "stop": False})

            def last(outcome: InfillOutcome, stream: StreamText) -> list[str]:
                finals = []
                for row, result in enumerate(results(outcome)):
                    # the last event carries what the earlier ones did not yet send, with every field
                    text = result.get("content")
                    if isinstance(text, str):
                        result["content"] = stream.rest(row, text)
                    finals.append(dumps(result))
                return finals

            # native streams end without `data: [DONE]` (llama-server's TASK_RESPONSE_TYPE_NONE)
            return await self.stream(request, backend, job, completion, event, last, done=False)
        outcome = await self.run(request, backend, job)
        if outcome is None:
            return Response(status_code=CLIENT_GONE)
        answer = results(outcome)
        return CompactJSON(answer[0] if len(answer) == 1 else answer)

    async def openai_completions(self, request: Request) -> Response:
        self.authorize(request)
        backend = self.host.ready()
        completion = parse_openai(await self.read_json(request), self.settings)
        prompt, job = await self.job(request, backend, completion, id_slot=None, arrived=time.monotonic())
        completion_id, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        model = completion.model or backend.model_name
        if completion.stream:
            def event(row: int, delta: str) -> str:
                return dumps(openai_chunk(completion_id, created, model, row, delta, None))

            def last(outcome: InfillOutcome, stream: StreamText) -> list[str]:
                answers = completions(outcome, completion.stop, job.max_tokens, len(job.temperatures))
                self.metrics.predicted(sum(a.tokens_predicted for a in answers))
                # finish_reason before [DONE]: Tabby stops at the first non-null one and parses every event
                return [dumps(openai_chunk(completion_id, created, model, row, stream.rest(row, answer.text),
                                           answer.finish_reason)) for row, answer in enumerate(answers)]

            return await self.stream(request, backend, job, completion, event, last, done=True)
        outcome = await self.run(request, backend, job)
        if outcome is None:
            return Response(status_code=CLIENT_GONE)
        answers = completions(outcome, completion.stop, job.max_tokens, len(job.temperatures))
        self.metrics.predicted(sum(a.tokens_predicted for a in answers))
        return CompactJSON(openai_result(completion_id, created, model, answers, prompt.prompt_tokens))

    async def job(self, request: Request, backend: Backend, completion: CompletionRequest, id_slot: int | None,
                  arrived: float) -> tuple[Prompt, InfillJob]:
        """The prompt cut to the model's positions (in a thread: a large body takes milliseconds to encode, which
        would hold up every other client on the event loop) and the backend's job."""
        # A warm-up (n_predict 0) computes the canvas a completion with the default span would use.
        span = completion.max_tokens or self.settings.max_tokens
        assert self.host.counter is not None  # set before the backend
        try:
            prompt = await asyncio.to_thread(build_prompt, backend.tokenizer, self.host.counter,
                                             backend.max_positions, span, completion.prefix, completion.suffix,
                                             completion.extra, self.settings.extra_tokens)
        except ValueError as exc:
            raise ApiError(400, str(exc), param="n_predict" if id_slot is not None else "max_tokens") from None
        # t_max_predict_ms counts from the request's arrival here (llama-server's, from its first token, and only
        # once a line has ended); it does not apply to a warm-up, which predicts nothing (llama.vim sends 1 ms).
        deadline = None
        if completion.deadline_ms is not None and completion.max_tokens:
            deadline = arrived + completion.deadline_ms / 1000.0
        job = InfillJob(prefix=prompt.prefix, suffix=prompt.suffix, max_tokens=completion.max_tokens,
                        temperatures=completion.temperatures(self.settings), seed=completion.seed,
                        stop=completion.stop, deadline=deadline,
                        client=self.client_key(request, id_slot) if completion.cache_prompt else None)
        return prompt, job

    async def run(self, request: Request, backend: Backend, job: InfillJob) -> InfillOutcome | None:
        """The backend's outcome; None when the client disconnected first, which cancels the job."""
        task = asyncio.ensure_future(backend.infill(job))
        watcher = asyncio.ensure_future(disconnected(request))
        try:
            await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            if not task.done():
                task.cancel()
        if not task.done() or task.cancelled():
            logger.debug("%s: the client went away; its job was cancelled", request.url.path)
            return None
        return _outcome(task)

    async def stream(self, request: Request, backend: Backend, job: InfillJob, completion: CompletionRequest,
                     event: Callable[[int, str], str], last: Callable[[InfillOutcome, StreamText], list[str]],
                     done: bool) -> Response:
        """Server-sent events of each row's newly decided text (a diffusion model decides tokens in any order;
        the text up to the first masked position only grows), then the last events from `last`, then
        `data: [DONE]` when `done`. The response starts once the first pass is over, so that an Overloaded or a
        failed job is still an HTTP error and not an event."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        def progress(texts: tuple[str, ...]) -> None:  # on the engine's thread
            try:
                loop.call_soon_threadsafe(queue.put_nowait, texts)
            except RuntimeError:  # the loop closed: the server is stopping
                pass

        task = asyncio.ensure_future(backend.infill(replace(job, on_progress=progress)))
        task.add_done_callback(lambda _: queue.put_nowait(_FINISHED))
        first = await self._first_item(request, queue, task)
        if first is None:
            return Response(status_code=CLIENT_GONE)
        if first is _FINISHED:
            _outcome(task)  # raises the job's error as an HTTP error
        text = StreamText(len(job.temperatures), completion.stop)

        async def events() -> AsyncIterator[str]:
            item = first
            try:
                while item is not _FINISHED:
                    for row, decided in enumerate(item):
                        if delta := text.delta(row, decided):
                            yield f"data: {event(row, delta)}\n\n"
                    item = await queue.get()
                try:
                    finals = last(_outcome(task), text)
                except Exception as exc:  # headers are out: the error becomes an event every client parses
                    error = exc if isinstance(exc, ApiError) else ApiError(500, one_line(exc, typed=True))
                    logger.error("%s: the stream failed: %s", request.url.path, error.message)
                    body = openai_body(error) if request.url.path.startswith("/v1/") else native_body(error)
                    finals = [dumps(body)]
                for final in finals:
                    yield f"data: {final}\n\n"
                if done:
                    yield "data: [DONE]\n\n"
            finally:  # the client went away mid-stream (Starlette cancels this generator), or the stream ended
                task.cancel()

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def _first_item(self, request: Request, queue: asyncio.Queue[Any], task: asyncio.Future[Any]) -> Any:
        getter = asyncio.ensure_future(queue.get())
        watcher = asyncio.ensure_future(disconnected(request))
        try:
            await asyncio.wait((getter, watcher), return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
        if getter.done():
            return getter.result()
        getter.cancel()
        task.cancel()
        return None


def _outcome(task: asyncio.Future[Any]) -> InfillOutcome:
    """The finished task's outcome; Overloaded becomes a 503 with Retry-After."""
    try:
        return task.result()
    except Overloaded as exc:
        raise ApiError(503, str(exc), headers={"Retry-After": str(exc.retry_after_s)}) from None


async def disconnected(request: Request) -> None:
    """Returns once the client closed the connection. The body has been read, so the next ASGI message is the
    disconnect (uvicorn also sends it once the response is complete, by when nobody waits for it)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def run(app: FastAPI, host: str, port: int, log_level: str) -> int:
    """Serve `app` until interrupted; logs go through the root logger (stderr), uvicorn's too."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level.lower(), log_config=None,
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    try:
        asyncio.run(server.serve())
    except KeyboardInterrupt:  # uvicorn shut down gracefully on Ctrl-C, then raises it again: a normal stop
        pass
    return 0 if server.started else 1
