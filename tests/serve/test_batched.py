"""BatchedBackend: requests decoded in shared passes answer as they would alone; admission, stops, deadlines, reuse."""

from __future__ import annotations

import asyncio
import time

import pytest

from coda_engine import Engine
from tests.conftest import ROOT
from coda_engine.blockwise import run_alone
from coda_lsp.serve.backend import InfillJob, Overloaded
from coda_lsp.serve.batched import BatchedBackend, CanvasStore

PROMPTS = [
    ("def total(values):\n    result = 0\n    for value in values:\n", "\n    return result\n"),
    ("import os\n\n\ndef read(path):\n", "\n\nprint(read('a.txt'))\n"),
    ("class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n", "\n"),
    ("x = [", "]\nprint(x)\n"),
    ("for i in range(10):\n", "\nprint('done')\n"),
    ("def add(a, b):\n    return", "\n\n\nprint(add(1, 2))\n"),
    ("# greet\nname = input()\n", "\nprint(greeting)\n"),
    ("values = {}\n", "\nprint(len(values))\n"),
]


class Observed:
    """A PassObserver that remembers what it was told."""

    def __init__(self) -> None:
        self.passes: list[tuple[int, int]] = []
        self.lookups: list[tuple[bool, int]] = []

    def pass_done(self, rows: int, tokens: int) -> None:
        self.passes.append((rows, tokens))

    def cache_lookup(self, hit: bool, reused_tokens: int) -> None:
        self.lookups.append((hit, reused_tokens))

    def queue_depth(self, waiting: int, rows_in_flight: int) -> None:
        pass


@pytest.fixture(scope="module")
def engine(tiny_checkpoint) -> Engine:
    return Engine.from_pretrained(tiny_checkpoint)


@pytest.fixture
async def backend(engine):
    observed = Observed()
    backend = BatchedBackend(engine, observed, max_rows=16, max_queue=16)
    backend.observed = observed
    yield backend
    backend.close()


async def wait_until(condition, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_concurrent_greedy_requests_answer_as_they_do_alone(backend):
    jobs = [InfillJob(prefix, suffix, 16) for prefix, suffix in PROMPTS]
    alone = [await backend.infill(job) for job in jobs]
    assert all(rows == 1 for rows, _ in backend.observed.passes)
    backend.observed.passes.clear()
    together = await asyncio.gather(*(backend.infill(job) for job in jobs))
    assert [o.texts for o in together] == [o.texts for o in alone]
    assert max(rows for rows, _ in backend.observed.passes) > 1  # they did share passes
    assert all(o.finished == (True,) and o.passes >= 1 and o.tokens_evaluated > 0 for o in together)


async def test_candidates_are_rows_of_one_request(backend):
    outcome = await backend.infill(InfillJob(*PROMPTS[0], 12, temperatures=(0.0, 0.9, 0.9), seed=5))
    again = await backend.infill(InfillJob(*PROMPTS[0], 12, temperatures=(0.0, 0.9, 0.9), seed=5))
    assert len(outcome.texts) == 3 and outcome.texts == again.texts


async def test_a_full_queue_refuses_with_retry_after(engine):
    backend = BatchedBackend(engine, max_rows=1, max_queue=1)
    try:
        first = asyncio.create_task(backend.infill(InfillJob(*PROMPTS[0], 64)))
        await wait_until(lambda: backend.rows_in_flight == 1)
        second = asyncio.create_task(backend.infill(InfillJob(*PROMPTS[1], 8)))
        await wait_until(lambda: len(backend._waiting) == 1)
        with pytest.raises(Overloaded) as refused:
            await backend.infill(InfillJob(*PROMPTS[2], 8))
        assert refused.value.retry_after_s >= 1
        assert (await first).texts and (await second).texts
    finally:
        backend.close()


async def test_a_caller_that_goes_away_leaves_before_the_next_pass(backend):
    task = asyncio.create_task(backend.infill(InfillJob(*PROMPTS[0], 64, client="gone")))
    await wait_until(lambda: backend.rows_in_flight == 1 and backend.num_passes > 0)
    passes = backend.num_passes
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until(lambda: backend.rows_in_flight == 0)
    assert backend.num_passes <= passes + 2
    # What its passes computed is kept for the client's next request.
    assert backend.store.best("gone", *backend.engine.layout(*PROMPTS[0], 64)) is not None


async def test_a_deadline_answers_with_the_text_decided_so_far(backend):
    outcome = await backend.infill(InfillJob(*PROMPTS[2], 64, deadline=time.monotonic()))
    full = await backend.infill(InfillJob(*PROMPTS[2], 64))
    assert outcome.passes == 1 and outcome.finished == (False,)
    assert full.texts[0].startswith(outcome.texts[0])


async def test_stop_strings_end_decoding_early():
    # The shipped model writes code (the random one writes no line breaks to stop at).
    backend = BatchedBackend(Engine.from_pretrained(ROOT / "models" / "coda-tiny", dtype="fp32"))
    try:
        job = InfillJob("def fib(n):\n", "\n\n\nprint(fib(10))\n", 64)
        full = await backend.infill(job)
        stopped = await backend.infill(InfillJob(job.prefix, job.suffix, 64, stop=("\n",)))
    finally:
        backend.close()
    assert "\n" in full.texts[0].strip("\n"), full.texts  # the full span writes several lines
    assert "\n" in stopped.texts[0] and stopped.passes < full.passes
    assert full.texts[0].startswith(stopped.texts[0].split("\n")[0])


async def test_a_warm_up_then_a_request_reuse_the_clients_canvas(backend):
    prefix, suffix = PROMPTS[0]
    warm = await backend.infill(InfillJob(prefix, suffix, 0, client="vim"))
    assert warm.texts == () and warm.tokens_evaluated > 0
    typed = await backend.infill(InfillJob(prefix + "        ", suffix, 16, client="vim"))
    assert typed.tokens_cached > 0 and typed.tokens_evaluated < warm.tokens_evaluated
    other = await backend.infill(InfillJob(prefix + "        ", suffix, 16, client="emacs"))
    assert other.tokens_cached == 0
    assert (True, typed.tokens_cached) in backend.observed.lookups


async def test_a_request_the_model_cannot_take_fails_alone(backend):
    with pytest.raises(ValueError, match="max_position_embeddings"):
        await backend.infill(InfillJob("x = 1\n" * 3000, "", 8))
    assert (await backend.infill(InfillJob(*PROMPTS[3], 8))).texts


async def test_bad_jobs_are_refused(backend):
    with pytest.raises(ValueError):
        await backend.infill(InfillJob("x", "", 8, temperatures=()))


def test_the_store_keeps_the_best_match_within_its_budget(engine):
    store = CanvasStore(budget_bytes=10**9)
    runs = []
    for prefix, suffix in PROMPTS[:3]:
        run = engine.start_infill(prefix, suffix, (0.0,), 8)
        runs.append(run.kept(run_alone(run.blockwise)))
    for canvas in runs:
        store.put("me", canvas, None)
    ids, span = engine.layout(PROMPTS[1][0] + "    ", PROMPTS[1][1], 8)
    key, best = store.best("me", ids, span)
    assert best is runs[1]
    store.put("me", runs[1], key)  # the successor replaces the entry it started from
    assert len(store._entries) == 3
    store.budget_bytes = runs[0].cache.num_bytes
    store.put("you", runs[0], None)
    assert list(store._entries) == [("you", 4)]
    assert store.best("me", ids, span) is None
