"""create_app(backend_factory, settings) -> FastAPI: llama-server's /infill, OpenAI's /v1/completions, health,
models, props, tokenizer and metrics, in front of one Backend that loads in a thread after startup. No request
takes the server down (docs/serving.md, "Limits and failures")."""

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
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from coda_engine.errors import Overloaded, one_line
from coda_engine.jobs import InfillJob, InfillOutcome, PassObserver
from coda_lsp import __version__
from coda_lsp.backend import JOB_DONE, Backend, start_streamed
from coda_lsp.context import TokenCounter
from coda_lsp.serve.errors import ApiError, native_body, openai_body
from coda_lsp.serve.metrics import CONTENT_TYPE, ServeMetrics
from coda_lsp.serve.prompt import Prompt, build_prompt
from coda_lsp.serve.requests import CompletionRequest, parse_infill, parse_openai
from coda_lsp.serve.responses import (Completion, StreamText, completions, dumps, native_result, openai_chunk,
                                      openai_result, select_fields)
from coda_lsp.serve.settings import ServeSettings

logger = logging.getLogger(__name__)

BackendFactory = Callable[[PassObserver], Backend]
CLIENT_GONE = 499  # nginx's "client closed request": counted in the metrics, never sent


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
        self.counter, self.backend, self.state = TokenCounter(backend.tokenizer), backend, "ready"
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

    # (method, paths, the endpoint's name in the metrics, its work, whether it needs the API key)
    routes = (("GET", ("/health", "/v1/health"), "health", service.health, False),
              ("GET", ("/v1/models", "/models"), "models", service.models, False),
              ("GET", ("/props",), "props", service.props, True),
              ("GET", ("/tokenizer",), "tokenizer", service.tokenizer_json, True),
              ("GET", ("/metrics",), "metrics", service.metrics_text, True),
              ("POST", ("/infill",), "infill", service.infill, True),
              ("POST", ("/v1/completions",), "completions", service.openai_completions, True))
    for method, paths, endpoint, work, needs_key in routes:
        for path in paths:
            app.add_api_route(path, service.route(endpoint, work, needs_key), methods=[method])
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

    def route(self, endpoint: str, work: Callable[[Request], Awaitable[Response]],
              needs_key: bool) -> Callable[[Request], Awaitable[Response]]:
        """The route's handler: `work`'s response, or the error it raised in the route's shape; counted in the
        metrics (a stream when its last event is out)."""
        async def answer(request: Request) -> Response:
            started = time.perf_counter()
            try:
                if needs_key:
                    self.authorize(request)
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
        return answer

    async def _counted(self, events: Any, endpoint: str, started: float) -> AsyncIterator[Any]:
        status = CLIENT_GONE
        try:
            async for event in events:
                yield event
            status = 200
        finally:
            self.metrics.request_done(endpoint, status, time.perf_counter() - started)

    def error_response(self, request: Request, error: ApiError) -> Response:
        if error.status >= 500:
            logger.debug("%s %s: %d %s", request.method, request.url.path, error.status, error.message)
        return CompactJSON(_error_body(request, error), status_code=error.status, headers=error.headers)

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

    async def props(self, _: Request) -> Response:
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

    async def tokenizer_json(self, _: Request) -> Response:
        """The model's tokenizer as one tokenizer.json (not llama-server's): `coda-lsp --remote` counts context
        tokens with it exactly as the server will, without a copy of the model."""
        backend = self.host.ready()
        if self._tokenizer_json is None:
            self._tokenizer_json = await asyncio.to_thread(backend.tokenizer.backend.to_str)
        return Response(self._tokenizer_json, media_type="application/json")

    async def metrics_text(self, _: Request) -> Response:
        return Response(self.metrics.exposition(), media_type=CONTENT_TYPE)

    # ---- completions -----------------------------------------------------------------------------------------

    async def infill(self, request: Request) -> Response:
        arrived = time.monotonic()
        backend = self.host.ready()
        completion = parse_infill(await self.read_json(request), self.settings)
        prompt, job = await self.job(request, backend, completion, id_slot=completion.id_slot, arrived=arrived)
        id_slot = max(completion.id_slot, 0)

        def results(outcome: InfillOutcome) -> list[dict[str, Any]]:
            return [select_fields(native_result(index, answer, outcome, model=backend.model_name, id_slot=id_slot,
                                                truncated=prompt.truncated), completion.response_fields)
                    for index, answer in enumerate(self.answers(outcome, completion, job))]

        def event(row: int, delta: str) -> str:
            return dumps({"index": row, "content": delta, "tokens": [], "stop": False})

        def last(outcome: InfillOutcome, stream: StreamText) -> list[str]:
            finals = results(outcome)
            for row, result in enumerate(finals):
                # the last event carries what the earlier ones did not yet send, with every field
                if isinstance(result.get("content"), str):
                    result["content"] = stream.rest(row, result["content"])
            return [dumps(result) for result in finals]

        def whole(outcome: InfillOutcome) -> Any:
            answer = results(outcome)
            return answer[0] if len(answer) == 1 else answer

        # native streams end without `data: [DONE]` (llama-server's TASK_RESPONSE_TYPE_NONE)
        return await self.respond(request, backend, job, completion, event, last, whole, done=False)

    async def openai_completions(self, request: Request) -> Response:
        backend = self.host.ready()
        completion = parse_openai(await self.read_json(request), self.settings)
        prompt, job = await self.job(request, backend, completion, id_slot=None, arrived=time.monotonic())
        completion_id, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        model = completion.model or backend.model_name

        def event(row: int, delta: str) -> str:
            return dumps(openai_chunk(completion_id, created, model, row, delta, None))

        def last(outcome: InfillOutcome, stream: StreamText) -> list[str]:
            # finish_reason before [DONE]: Tabby stops at the first non-null one and parses every event
            return [dumps(openai_chunk(completion_id, created, model, row, stream.rest(row, answer.text),
                                       answer.finish_reason))
                    for row, answer in enumerate(self.answers(outcome, completion, job))]

        def whole(outcome: InfillOutcome) -> Any:
            answers = self.answers(outcome, completion, job)
            return openai_result(completion_id, created, model, answers, prompt.prompt_tokens)

        return await self.respond(request, backend, job, completion, event, last, whole, done=True)

    def answers(self, outcome: InfillOutcome, completion: CompletionRequest, job: InfillJob) -> list[Completion]:
        answers = completions(outcome, completion.stop, job.max_tokens, len(job.temperatures))
        self.metrics.predicted(sum(answer.tokens_predicted for answer in answers))
        return answers

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

    async def respond(self, request: Request, backend: Backend, job: InfillJob, completion: CompletionRequest,
                      event: Callable[[int, str], str], last: Callable[[InfillOutcome, StreamText], list[str]],
                      whole: Callable[[InfillOutcome], Any], done: bool) -> Response:
        """The job's answer: `whole(outcome)` as one body, or a stream of `event`s, then the `last` ones, then
        `data: [DONE]` when `done`; status CLIENT_GONE when the client went away first, which cancels the job."""
        if completion.stream:
            return await self.stream(request, backend, job, completion, event, last, done)
        task = asyncio.ensure_future(backend.infill(job))
        if not await _unless_gone(request, task):
            logger.debug("%s: the client went away; its job was cancelled", request.url.path)
            return Response(status_code=CLIENT_GONE)
        return CompactJSON(whole(_outcome(task)))

    async def stream(self, request: Request, backend: Backend, job: InfillJob, completion: CompletionRequest,
                     event: Callable[[int, str], str], last: Callable[[InfillOutcome, StreamText], list[str]],
                     done: bool) -> Response:
        """Server-sent events of each row's newly decided text (docs/serving.md, "Streaming"). The response starts
        once the first pass is over, so that an Overloaded or a failed job is still an HTTP error, not an event."""
        task, queue = start_streamed(backend, job)
        getter = asyncio.ensure_future(queue.get())
        if not await _unless_gone(request, getter):
            task.cancel()
            return Response(status_code=CLIENT_GONE)
        first = getter.result()
        if first is JOB_DONE:
            _outcome(task)  # raises the job's error as an HTTP error
        text = StreamText(len(job.temperatures), completion.stop)

        async def events() -> AsyncIterator[str]:
            item = first
            try:
                while item is not JOB_DONE:
                    for row, decided in enumerate(item):
                        if delta := text.delta(row, decided):
                            yield f"data: {event(row, delta)}\n\n"
                    item = await queue.get()
                try:
                    finals = last(_outcome(task), text)
                except Exception as exc:  # headers are out: the error becomes an event every client parses
                    error = exc if isinstance(exc, ApiError) else ApiError(500, one_line(exc, typed=True))
                    logger.error("%s: the stream failed: %s", request.url.path, error.message)
                    finals = [dumps(_error_body(request, error))]
                for final in finals:
                    yield f"data: {final}\n\n"
                if done:
                    yield "data: [DONE]\n\n"
            finally:  # the client went away mid-stream (Starlette cancels this generator), or the stream ended
                task.cancel()

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _error_body(request: Request, error: ApiError) -> dict[str, Any]:
    return openai_body(error) if request.url.path.startswith("/v1/") else native_body(error)


def _outcome(task: asyncio.Future[Any]) -> InfillOutcome:
    """The finished task's outcome; Overloaded becomes a 503 with Retry-After."""
    try:
        return task.result()
    except Overloaded as exc:
        raise ApiError(503, str(exc), headers={"Retry-After": str(exc.retry_after_s)}) from None


async def _unless_gone(request: Request, work: asyncio.Future[Any]) -> bool:
    """Waits for `work` unless the client disconnects first, which cancels it; True when `work` finished."""
    async def disconnected() -> None:
        # The body has been read, so the next ASGI message is the disconnect (uvicorn also sends it once the
        # response is complete, by when nobody waits for it).
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait((work, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not work.done():
            work.cancel()
    return work.done() and not work.cancelled()


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
