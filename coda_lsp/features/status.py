"""coda/status: model, where it runs, weights and kernels, state (loading / ready / error), the scheduler's
queue, the work ahead of the user and recent latency percentiles."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from coda_lsp import __version__
from coda_lsp.server import CodaServer

STATUS = "coda/status"


def register(server: CodaServer) -> None:
    @server.feature(STATUS)
    def status(ls: CodaServer, params: Any) -> dict[str, Any]:
        backend = ls.host.backend
        cache = ls.pipeline.cache
        described = backend.describe() if backend is not None else {"device": ls.host.spec.device,
                                                                     "dtype": ls.host.spec.dtype}
        return {
            "version": __version__,
            "state": ls.host.state.value,
            "error": ls.host.error,
            "modelPath": ls.host.spec.name,
            "remote": ls.host.spec.remote,
            # device, dtype (and why), Triton or torch kernels (and why), the scheduler's queue and work ahead
            **described,
            "latency": ls.latency.summary(),
            "numEngineCalls": ls.pipeline.num_engine_calls,
            "numWarms": ls.pipeline.num_warms,
            "workAhead": {"prepared": ls.pipeline.ahead.prepared, "answered": ls.pipeline.ahead.answered,
                          "focusWarms": ls.pipeline.ahead.focus_warms},
            "cache": {"entries": len(cache), "hits": cache.num_hits, "misses": cache.num_misses},
            "crossFile": {"state": ls.cross_file.state, "numFiles": len(ls.cross_file.index),
                          "isTruncated": ls.cross_file.is_truncated, "buildMs": round(ls.cross_file.build_ms, 1),
                          "numEditedRanges": len(ls.cross_file.edits.ranges)},
            "settings": asdict(ls.settings),
        }
