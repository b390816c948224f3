"""coda/status: model path, device, dtype, kernels, state (loading / ready / error) and recent latency percentiles."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from coda_lsp import __version__
from coda_lsp.server import CodaServer

STATUS = "coda/status"


def register(server: CodaServer) -> None:
    @server.feature(STATUS)
    def status(ls: CodaServer, params: Any) -> dict[str, Any]:
        engine = ls.host.engine
        cache = ls.pipeline.cache
        return {
            "version": __version__,
            "state": ls.host.state.value,
            "error": ls.host.error,
            "modelPath": ls.host.spec.name,
            "remote": ls.host.spec.remote,
            "device": str(engine.device) if engine is not None else ls.host.spec.device,
            "dtype": engine.precision.name if engine is not None else ls.host.spec.dtype,
            "dtypeReason": engine.precision.reason if engine is not None else None,
            # Triton or torch for the denoising step, and why (a failed probe or kernel says what failed).
            "kernels": engine.kernels.name if engine is not None else None,
            "kernelsReason": engine.kernels.reason if engine is not None else None,
            "latency": ls.latency.summary(),
            "numEngineCalls": ls.pipeline.num_engine_calls,
            "numWarms": ls.pipeline.num_warms,
            "cache": {"entries": len(cache), "hits": cache.num_hits, "misses": cache.num_misses},
            "crossFile": {"state": ls.cross_file.state, "numFiles": len(ls.cross_file.index),
                          "isTruncated": ls.cross_file.is_truncated, "buildMs": round(ls.cross_file.build_ms, 1),
                          "numEditedRanges": len(ls.cross_file.edits.ranges)},
            "settings": asdict(ls.settings),
        }
