"""HttpBackend: jobs answered by a `coda-lsp serve` over its streamed POST /infill (`coda-lsp --remote URL`); the
design (tokenizer from the server, cancelling closes the connection, no warm-ups): docs/serving.md, "The language
server as a thin client"."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from coda_engine.errors import one_line
from coda_engine.jobs import InfillJob, InfillOutcome, TextCheck
from coda_engine.tokenizer import Tokenizer
from coda_lsp.backend import BackendUnavailable

CONNECT_TIMEOUT_S = 3.0
# The server queues requests behind other clients' rows; past this without a byte the request is given up.
READ_TIMEOUT_S = 30.0
FAIL_FAST_S = 1.0      # after a failure, requests fail at once for this long (no connect timeout per keystroke)

StatusCallback = Callable[[str | None], None]  # a one-line reason when the server stops answering, None when back
_NOTHING = InfillOutcome((), (), (), 0, 0, 0.0, 0.0, 0)


class HttpBackend:
    """coda_lsp.backend.Backend answered by the `coda-lsp serve` at `url`."""

    works_ahead = False  # the HTTP API has no priorities: work ahead would compete with other clients' requests

    def __init__(self, url: str, api_key: str | None, on_status: StatusCallback | None = None) -> None:
        self.url = url.rstrip("/")
        self.on_status = on_status
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S))
        self._failing: str | None = None
        self._failed_at = 0.0
        self.tokenizer: Tokenizer | None = None
        self.max_positions = 0
        self.model_name = self.url
        self.device = "remote"

    async def connect(self) -> HttpBackend:
        """Read the server's props and tokenizer; BackendUnavailable with a one-line reason if it cannot answer,
        ValueError if what answers is not a `coda-lsp serve`."""
        from tokenizers import Tokenizer as HFTokenizer

        props = json.loads(await self._call(self._get("/props")))
        tokenizer_json = await self._call(self._get("/tokenizer"))
        try:
            self.tokenizer = Tokenizer(HFTokenizer.from_str(tokenizer_json), self.url + "/tokenizer")  # type: ignore[arg-type]
            self.max_positions = int(props["default_generation_settings"]["n_ctx"])
        except Exception as exc:  # something answers, but not as a coda-lsp serve does
            raise ValueError(f"its /props and /tokenizer are not a coda-lsp serve's: {one_line(exc)}") from None
        self.model_name = str(props.get("model_path", self.url))
        self.device = str(props.get("device", "unknown"))  # where the server's model runs
        return self

    async def infill(self, job: InfillJob) -> InfillOutcome:
        """One streamed /infill with n_cmpl = the job's rows; decoding is the server's (its settings), the job
        gives the texts, span, rows, first temperature, seed and stop strings."""
        if job.is_warm_up:
            return _NOTHING
        started = time.perf_counter()
        body = {"input_prefix": job.prefix, "input_suffix": job.suffix, "n_predict": job.max_tokens,
                "n_cmpl": len(job.temperatures), "temperature": job.temperatures[0], "stream": True,
                "cache_prompt": job.client is not None, "id_slot": 0, **({} if job.seed is None else {"seed": job.seed}),
                **({"stop": list(job.stop)} if job.stop else {})}
        texts = await self._call(self._stream(body, len(job.temperatures), job.done_when))
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        counts = tuple(len(self.tokenizer.encode(text)) if self.tokenizer else 0 for text in texts)
        return InfillOutcome(tuple(texts), (True,) * len(texts), counts, 0, 0, 0.0, elapsed_ms, 0)

    def describe(self) -> dict[str, Any]:
        return {"device": self.device, "dtype": "remote", "dtypeReason": f"weights held by {self.url}",
                "kernels": "remote", "kernelsReason": f"decoded by {self.url}", "error": self._failing}

    def close(self) -> None:
        """Connections close with the process; an open stream is closed by cancelling its task."""

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _get(self, path: str) -> str:
        response = await self._client.get(self.url + path, headers=self._headers)
        if response.status_code != 200:
            raise BackendUnavailable(_error_line(response.status_code, response.text))
        return response.text

    async def _call(self, request: Any) -> Any:
        """Await `request`; a failure raises BackendUnavailable, and the status callback hears of the first
        failure in a row and of the recovery. Right after a failure requests fail at once (FAIL_FAST_S)."""
        if self._failing is not None and time.monotonic() - self._failed_at < FAIL_FAST_S:
            request.close()
            raise BackendUnavailable(self._failing)
        try:
            result = await request
        except BackendUnavailable as exc:
            self._failed(str(exc))
            raise
        except (httpx.HTTPError, OSError, ValueError, KeyError) as exc:
            reason = f"{type(exc).__name__}: {one_line(exc)}"
            self._failed(reason)
            raise BackendUnavailable(reason) from None
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

    async def _stream(self, body: dict[str, Any], rows: int, done_when: TextCheck | None) -> list[str]:
        """Each row's text from the server's native event stream; closing it once `done_when` holds for every row
        makes the server drop the rest, as the engine's own done_when ends decoding."""
        texts, stopped = [""] * rows, [False] * rows
        async with self._client.stream("POST", self.url + "/infill", json=body, headers=self._headers) as response:
            if response.status_code != 200:
                raise BackendUnavailable(_error_line(response.status_code, (await response.aread()).decode()))
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                event = json.loads(line[len("data: "):])
                if "error" in event:
                    raise BackendUnavailable(f"the server failed: {event['error'].get('message', event['error'])}")
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
