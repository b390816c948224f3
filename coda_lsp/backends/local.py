"""LocalBackend: the engine in this process; its scheduler decodes every job (coda_engine.scheduler)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from coda_engine import Engine
from coda_engine.jobs import InfillJob, InfillOutcome, PassObserver
from coda_engine.params import EngineOptions
from coda_engine.scheduler import Scheduler


class LocalBackend:
    """coda_lsp.backend.Backend over one Engine and its Scheduler."""

    works_ahead = True

    def __init__(self, engine: Engine, observer: PassObserver | None = None) -> None:
        self.engine = engine
        self.scheduler = Scheduler(engine, observer)
        self.tokenizer = engine.tokenizer
        self.max_positions = engine.config.max_position_embeddings
        self.model_name = engine.path.name
        self.device = str(engine.device)

    @classmethod
    def load(cls, model: str | Path, options: EngineOptions, observer: PassObserver | None = None,
             spans: Sequence[int] = (24, 64), candidate_temperature: float = 0.8) -> LocalBackend:
        """Load the model (a one-line CheckpointError on a bad folder) and warm it up for these spans: the
        first job would otherwise pay for allocator set-up (hundreds of ms on a CPU) and, on a GPU, for
        compiling the Triton kernels (seconds), which belong to loading."""
        engine = Engine.from_pretrained(model, options)
        engine.warm_up(spans, candidate_temperature)
        return cls(engine, observer)

    async def infill(self, job: InfillJob) -> InfillOutcome:
        """The job's outcome, decoded beside whatever else is in flight. Raises Overloaded when the queue is
        full; cancelling the awaiting task withdraws the job, which stops before its next pass."""
        ticket = self.scheduler.submit(job)
        try:
            return await asyncio.wrap_future(ticket.future)
        except asyncio.CancelledError:
            ticket.cancel()
            raise

    def describe(self) -> dict[str, Any]:
        engine = self.engine
        return {"device": self.device, "dtype": engine.precision.name, "dtypeReason": engine.precision.reason,
                "kernels": engine.kernels.name, "kernelsReason": engine.kernels.reason,
                **self.scheduler.describe()}

    def close(self) -> None:
        self.scheduler.close()
