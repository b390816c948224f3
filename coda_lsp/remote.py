"""RemoteEngine: the engine surface the pipeline calls, answered by a `coda-lsp serve` over POST /infill.

`coda-lsp --remote URL` loads no model: context, triggers, debounce, cache, filters and items stay in the
language server, and each infill is one streamed /infill request. The methods are the Engine's and run where the
Engine's do, on the worker thread; the HTTP traffic runs on an event loop of its own, so that the worker thread
can poll `should_stop` and abort a request (closing its connection makes the server drop the job's rows). The
tokenizer comes from the server (GET /tokenizer), so context budgets are counted as the server counts them."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from coda_lsp.loader import EngineUnavailable

logger = logging.getLogger(__name__)

STOP_POLL_S = 0.02     # how often the worker thread checks should_stop while a request is out
CONNECT_TIMEOUT_S = 3.0
# The server queues requests behind other clients' rows; past this without a byte the request is given up.
READ_TIMEOUT_S = 30.0
FAIL_FAST_S = 1.0      # after a failure, requests fail at once for this long (no connect timeout per keystroke)

StatusCallback = Callable[[str | None], None]  # a one-line reason when the server stops answering, None when back


@dataclass(frozen=True)
class Named:
    """What coda/status shows for the engine's device, weight format and kernels."""

    name: str
    reason: str = ""

    @property
    def type(self) -> str:
        return self.name

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class RemoteConfig:
    max_position_embeddings: int


@dataclass(frozen=True)
class RemoteResult:
    text: str
    elapsed_ms: float


class RemoteEngine:
    """An Engine stand-in for the pipeline (infill_candidates, infill, warm, warm_up, tokenizer, config, device)."""

    def __init__(self, url: str, api_key: str | None, on_status: StatusCallback | None = None) -> None:
        self.url = url.rstrip("/")
        self.path = self.url
        self.on_status = on_status
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="coda-remote", daemon=True).start()
        self._client: httpx.AsyncClient | None = None
        self._failing: str | None = None
        self._failed_at = 0.0
        self.tokenizer: Any = None
        self.config = RemoteConfig(0)
        self.device = Named("remote")
        self.precision = Named("remote", f"weights held by {self.url}")
        self.kernels = Named("remote", f"decoded by {self.url}")

    # ---- connecting --------------------------------------------------------------------------------------------

    def connect(self) -> RemoteEngine:
        """Read the server's props and tokenizer; EngineUnavailable with a one-line reason if it cannot answer."""
        from tokenizers import Tokenizer as HFTokenizer

        from coda_engine.tokenizer import Tokenizer

        props = json.loads(self._call(self._get("/props"), None))
        tokenizer_json = self._call(self._get("/tokenizer"), None)
        self.tokenizer = Tokenizer(HFTokenizer.from_str(tokenizer_json), self.url + "/tokenizer")  # type: ignore[arg-type]
        self.config = RemoteConfig(int(props["default_generation_settings"]["n_ctx"]))
        device = str(props.get("device", "unknown"))
        self.device = Named(device.split(":")[0], device)
        self.model_name = str(props.get("model_path", self.url))
        return self

    async def _get(self, path: str) -> str:
        response = await self._http().get(self.url + path, headers=self._headers)
        if response.status_code != 200:
            raise EngineUnavailable(_error_line(response.status_code, response.text))
        return response.text

    # ---- the Engine's methods -----------------------------------------------------------------------------------

    def infill_candidates(self, prefix: str, suffix: str, temperatures: Sequence[float], max_new_tokens: int = 64,
                          seed: int | None = None, should_stop: Callable[[], bool] | None = None,
                          done_when: Callable[[str], bool] | None = None, **_: Any) -> list[RemoteResult]:
        """One /infill with n_cmpl = len(temperatures). The server picks steps, reveal rule, blocks and cache
        (alg, steps, threshold, block_size and cache are its settings, not the request's); the first row samples
        at temperatures[0], the others at the server's candidate temperature when that is 0."""
        started = time.perf_counter()
        body = {"input_prefix": prefix, "input_suffix": suffix, "n_predict": max_new_tokens,
                "n_cmpl": len(temperatures), "temperature": temperatures[0], "stream": True, "cache_prompt": True,
                "id_slot": 0, **({} if seed is None else {"seed": seed})}
        texts = self._call(self._stream_infill(body, len(temperatures), done_when), should_stop)
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        return [RemoteResult(text, elapsed_ms) for text in texts]

    def infill(self, prefix: str, suffix: str, max_new_tokens: int = 64, temperature: float = 0.0,
               seed: int | None = None, should_stop: Callable[[], bool] | None = None, **_: Any) -> RemoteResult:
        """`exact` and the sampling options are the server's to choose; one row."""
        return self.infill_candidates(prefix, suffix, (temperature,), max_new_tokens, seed, should_stop)[0]

    def warm(self, *_: Any, **__: Any) -> float:
        """Nothing: the server keeps each client's canvases and reuses them across keystrokes on its own, and a
        warm-up request per keystroke would double the traffic."""
        return 0.0

    def warm_up(self, *_: Any, **__: Any) -> None:
        """Nothing: the server warmed its own engine up when it loaded."""

    def close(self) -> None:
        async def shut() -> None:
            if self._client is not None:
                await self._client.aclose()
            self._loop.stop()  # after this step, in which shut() completes

        try:
            asyncio.run_coroutine_threadsafe(shut(), self._loop).result(timeout=2)
        except (concurrent.futures.TimeoutError, RuntimeError):  # a loop already stopped or stuck: exiting anyway
            pass

    # ---- the HTTP side --------------------------------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:  # made on the loop's thread, where its connections live
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S))
        return self._client

    def _call(self, request: Coroutine[Any, Any, Any], should_stop: Callable[[], bool] | None) -> Any:
        """Run `request` on the loop; on the worker thread, wait for it while asking `should_stop`. A stop
        cancels it (closing the connection) and raises coda_engine.Cancelled; a failure raises EngineUnavailable,
        and the status callback hears of the first failure in a row and of the recovery."""
        if self._failing is not None and time.monotonic() - self._failed_at < FAIL_FAST_S:
            request.close()
            raise EngineUnavailable(self._failing)
        future = asyncio.run_coroutine_threadsafe(request, self._loop)
        while True:
            try:
                result = future.result(timeout=STOP_POLL_S)
                break
            except concurrent.futures.TimeoutError:
                if should_stop is not None and should_stop():
                    future.cancel()
                    from coda_engine import Cancelled

                    raise Cancelled(0) from None
            except EngineUnavailable as exc:
                self._failed(str(exc))
                raise
            except (httpx.HTTPError, OSError, ValueError, KeyError) as exc:
                self._failed(_exception_line(exc))
                raise EngineUnavailable(_exception_line(exc)) from None
        if self._failing is not None:
            self._failing = None
            if self.on_status is not None:
                self.on_status(None)
        return result

    def _failed(self, reason: str) -> None:
        self._failed_at = time.monotonic()
        if self._failing is None and self.on_status is not None:
            self.on_status(reason)
        self._failing = reason

    async def _stream_infill(self, body: dict[str, Any], rows: int,
                             done_when: Callable[[str], bool] | None) -> list[str]:
        """Each row's text from the server's native event stream (the decided text as it grows, then a last event
        per row with stop true). Once `done_when` holds for every row's text the stream is closed: the server
        drops the rest, as the engine's own done_when ends decoding."""
        texts, stopped = [""] * rows, [False] * rows
        async with self._http().stream("POST", self.url + "/infill", json=body, headers=self._headers) as response:
            if response.status_code != 200:
                raise EngineUnavailable(_error_line(response.status_code, (await response.aread()).decode()))
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                event = json.loads(line[len("data: "):])
                if "error" in event:
                    raise EngineUnavailable(f"the server failed: {event['error'].get('message', event['error'])}")
                row = int(event.get("index", 0))
                texts[row] += event.get("content", "")
                stopped[row] = bool(event.get("stop"))
                if all(stopped) or (done_when is not None and all(done_when(text) for text in texts)):
                    break
        return texts


def _error_line(status: int, text: str) -> str:
    try:
        message = json.loads(text)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = text.strip().splitlines()[0] if text.strip() else "no message"
    return f"HTTP {status}: {message}"


def _exception_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
