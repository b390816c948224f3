"""The scheduler: jobs decoded in shared passes answer as they would alone; admission, cancellation, deadlines,
stops, kept canvases and their reuse, warm-ups, priorities and joining a job in flight."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError

import pytest
import torch

from coda_engine import Engine
from coda_engine.blockwise import run_alone
from coda_engine.canvas_store import CanvasStore
from coda_engine.errors import Overloaded
from coda_engine.jobs import InfillJob, InfillOutcome, Priority
from coda_engine.params import SERVED, CachePolicy, EngineOptions, InfillParams
from coda_engine.scheduler import Scheduler
from tests.conftest import ROOT

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
PREFIX, SUFFIX = PROMPTS[0]
TIMEOUT_S = 120


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
    return Engine.from_pretrained(tiny_checkpoint, max_rows=16, max_queue=16)


@pytest.fixture
def scheduler(engine) -> Iterator[Scheduler]:
    scheduler = Scheduler(engine, Observed())
    yield scheduler
    scheduler.close()


def answer(scheduler: Scheduler, job: InfillJob) -> InfillOutcome:
    return scheduler.submit(job).future.result(timeout=TIMEOUT_S)


def wait_until(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def kept(scheduler: Scheduler, client: str, prefix: str, suffix: str, span: int):
    found = scheduler.store.best(client, *scheduler.engine.layout(prefix, suffix, span))
    return found[1] if found is not None else None


def test_concurrent_greedy_jobs_answer_as_they_do_alone(scheduler):
    jobs = [InfillJob(prefix, suffix, 16) for prefix, suffix in PROMPTS]
    alone = [answer(scheduler, job) for job in jobs]
    assert all(rows == 1 for rows, _ in scheduler.observer.passes)
    scheduler.observer.passes.clear()
    tickets = [scheduler.submit(job) for job in jobs]
    together = [ticket.future.result(timeout=TIMEOUT_S) for ticket in tickets]
    assert [o.texts for o in together] == [o.texts for o in alone]
    assert max(rows for rows, _ in scheduler.observer.passes) > 1  # they did share passes
    assert all(o.finished == (True,) and o.passes >= 1 and o.tokens_evaluated > 0 for o in together)


def test_a_job_through_the_scheduler_writes_what_engine_infill_writes(scheduler, engine):
    direct = engine.infill(PREFIX, SUFFIX, 16)
    assert answer(scheduler, InfillJob(PREFIX, SUFFIX, 16, InfillParams())).texts == (direct.text,)


def test_candidates_are_rows_of_one_job(scheduler):
    job = InfillJob(PREFIX, SUFFIX, 12, temperatures=(0.0, 0.9, 0.9), seed=5)
    outcome, again = answer(scheduler, job), answer(scheduler, job)
    assert len(outcome.texts) == 3 and outcome.texts == again.texts


def test_an_exact_job_runs_coda_s_loop_for_each_row(scheduler, engine):
    params = InfillParams(exact=True, steps=4)
    outcome = answer(scheduler, InfillJob(PREFIX, SUFFIX, 8, params))
    assert outcome.texts == (engine.infill(PREFIX, SUFFIX, 8, params).text,) and outcome.passes == 4


def test_a_full_queue_refuses_with_retry_after(engine):
    scheduler = Scheduler(Engine(engine.model, engine.tokenizer, engine.path, EngineOptions(max_rows=1, max_queue=1)))
    try:
        first = scheduler.submit(InfillJob(*PROMPTS[0], 64))
        wait_until(lambda: scheduler.rows_in_flight == 1)
        second = scheduler.submit(InfillJob(*PROMPTS[1], 8))
        with pytest.raises(Overloaded) as refused:
            scheduler.submit(InfillJob(*PROMPTS[2], 8))
        assert refused.value.retry_after_s >= 1
        assert first.future.result(TIMEOUT_S).texts and second.future.result(TIMEOUT_S).texts
    finally:
        scheduler.close()


def test_withdrawn_jobs_leave_the_queue_at_once(engine):
    # A flood of requests cancelled as fast as they come, while one long job runs, never fills the queue.
    scheduler = Scheduler(Engine(engine.model, engine.tokenizer, engine.path, EngineOptions(max_rows=1, max_queue=1)))
    try:
        first = scheduler.submit(InfillJob(*PROMPTS[0], 64))
        wait_until(lambda: scheduler.rows_in_flight == 1)
        for prompt in PROMPTS[1:]:
            scheduler.submit(InfillJob(*prompt, 8)).cancel()
        last = scheduler.submit(InfillJob(*PROMPTS[1], 8))
        assert first.future.result(TIMEOUT_S).texts and last.future.result(TIMEOUT_S).texts
    finally:
        scheduler.close()


def test_a_caller_that_goes_away_leaves_before_the_next_pass(scheduler):
    ticket = scheduler.submit(InfillJob(*PROMPTS[0], 64, client="gone"))
    wait_until(lambda: scheduler.rows_in_flight == 1 and scheduler.num_passes > 0)
    passes = scheduler.num_passes
    ticket.cancel()
    with pytest.raises(CancelledError):
        ticket.future.result(timeout=TIMEOUT_S)
    wait_until(lambda: scheduler.rows_in_flight == 0)
    assert scheduler.num_passes <= passes + 2
    # What its passes computed is kept for the client's next job.
    assert kept(scheduler, "gone", *PROMPTS[0], 64) is not None


def test_a_deadline_answers_with_the_text_decided_so_far(scheduler):
    outcome = answer(scheduler, InfillJob(*PROMPTS[2], 64, deadline=time.monotonic()))
    full = answer(scheduler, InfillJob(*PROMPTS[2], 64))
    assert outcome.passes == 1 and outcome.finished == (False,)
    assert full.texts[0].startswith(outcome.texts[0])


def test_stop_strings_end_decoding_early():
    # The shipped model writes code (the random one writes no line breaks to stop at).
    scheduler = Scheduler(Engine.from_pretrained(ROOT / "models" / "coda-tiny", dtype="fp32"))
    try:
        job = InfillJob("def fib(n):\n", "\n\n\nprint(fib(10))\n", 64)
        full = answer(scheduler, job)
        stopped = answer(scheduler, InfillJob(job.prefix, job.suffix, 64, stop=("\n",)))
    finally:
        scheduler.close()
    assert "\n" in full.texts[0].strip("\n"), full.texts  # the full span writes several lines
    assert "\n" in stopped.texts[0] and stopped.passes < full.passes
    assert full.texts[0].startswith(stopped.texts[0].split("\n")[0])


def test_a_warm_up_then_a_job_reuse_the_clients_canvas(scheduler):
    warm = answer(scheduler, InfillJob(PREFIX, SUFFIX, 0, client="vim"))
    assert warm.texts == () and warm.tokens_evaluated > 0
    typed = answer(scheduler, InfillJob(PREFIX + "        ", SUFFIX, 16, client="vim"))
    assert typed.tokens_cached > 0 and typed.tokens_evaluated < warm.tokens_evaluated
    other = answer(scheduler, InfillJob(PREFIX + "        ", SUFFIX, 16, client="emacs"))
    assert other.tokens_cached == 0
    assert (True, typed.tokens_cached) in scheduler.observer.lookups


def test_a_warm_up_computes_the_exact_canvas_and_the_next_job_starts_from_it(engine):
    # A short span: the reused prefix and suffix must be at least half of the canvas.
    engine = Engine(engine.model, engine.tokenizer, engine.path, EngineOptions(warm_span=8))
    scheduler, span = Scheduler(engine), 8
    try:
        check_warm_up(scheduler, engine, span)
    finally:
        scheduler.close()


def check_warm_up(scheduler: Scheduler, engine: Engine, span: int) -> None:
    policy = InfillParams(cache=CachePolicy(margin=2, reuse=2))
    plain = engine.infill(PREFIX, SUFFIX, span, policy)
    answer(scheduler, InfillJob(PREFIX, SUFFIX, 0, policy, client="a"))
    warmed = kept(scheduler, "a", PREFIX, SUFFIX, span)
    ids, _ = engine.layout(PREFIX, SUFFIX, span)
    assert warmed.ids == tuple(ids) and warmed.stale == (0, 0) and warmed.reuses == 0
    full = engine.model.whole(torch.tensor([ids]))
    with torch.inference_mode():
        engine.model([full])
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(warmed.cache.keys + warmed.cache.values,
                                                              full.cache.keys + full.cache.values))
    # The job's first pass covers only the span; starting from an exact cache does not count as a reuse.
    after = answer(scheduler, InfillJob(PREFIX, SUFFIX, span, policy, client="a"))
    assert after.texts == (plain.text,) and after.tokens_evaluated == span
    assert kept(scheduler, "a", PREFIX, SUFFIX, span).reuses == 0
    # A second warm-up of a canvas kept fresh is free; without reuse there is nothing to keep.
    answer(scheduler, InfillJob(PREFIX + "    ", SUFFIX, 0, policy, client="b"))
    assert answer(scheduler, InfillJob(PREFIX + "    ", SUFFIX, 0, policy, client="b")).passes == 0
    assert answer(scheduler, InfillJob(PREFIX, SUFFIX, 0, InfillParams(), client="c")).passes == 0
    assert kept(scheduler, "c", PREFIX, SUFFIX, span) is None


def test_as_you_type_jobs_reuse_the_last_canvas_a_bounded_number_of_times(scheduler):
    params = InfillParams(cache=CachePolicy(margin=2, reuse=2))
    chain = []
    for typed in ["", "r", "re", "res"]:
        outcome = answer(scheduler, InfillJob(PREFIX + "        " + typed, SUFFIX, 8, params, client="typist"))
        assert outcome.finished == (True,)
        chain.append(kept(scheduler, "typist", PREFIX + "        " + typed, SUFFIX, 8).reuses)
    assert chain == [0, 1, 2, 0]  # the third reuse in a row would exceed the policy: a full pass instead
    # Candidates keep only the first row; a later one-row job starts from it.
    roomy = InfillParams(cache=CachePolicy(margin=2, reuse=4))
    answer(scheduler, InfillJob(PREFIX + "        r", SUFFIX, 8, roomy, (0.0, 0.8, 0.8), seed=0, client="many"))
    canvas = kept(scheduler, "many", PREFIX + "        r", SUFFIX, 8)
    assert canvas.cache.keys[0].shape[0] == 1
    answer(scheduler, InfillJob(PREFIX + "        re", SUFFIX, 8, roomy, client="many"))
    assert kept(scheduler, "many", PREFIX + "        re", SUFFIX, 8).reuses == canvas.reuses + 1
    # Without a client nothing is kept.
    answer(scheduler, InfillJob(PREFIX, SUFFIX, 8, roomy))
    assert len(scheduler.store) == 2


def count_layers_run(engine: Engine, monkeypatch) -> list[int]:
    calls: list[int] = []
    for index, layer in enumerate(engine.model.model.layers):
        forward = layer.forward
        monkeypatch.setattr(layer, "forward",
                            lambda *a, _f=forward, _i=index, **k: (calls.append(_i), _f(*a, **k))[1])
    return calls


def test_a_withdrawn_job_stops_its_first_pass_between_layers(scheduler, engine, monkeypatch):
    # A cold first pass over a long canvas is seconds on a CPU; the stop check is asked between its layers.
    answer(scheduler, InfillJob(PREFIX, SUFFIX, 8, client="me"))
    before = kept(scheduler, "me", PREFIX, SUFFIX, 8)
    first_layer_done, go_on = threading.Event(), threading.Event()
    layers = count_layers_run(engine, monkeypatch)
    layer_zero = engine.model.model.layers[0].forward

    def pause_after_layer_zero(*args, **kwargs):
        out = layer_zero(*args, **kwargs)
        first_layer_done.set()
        go_on.wait(TIMEOUT_S)
        return out

    monkeypatch.setattr(engine.model.model.layers[0], "forward", pause_after_layer_zero)
    ticket = scheduler.submit(InfillJob("import os\n" + PREFIX, SUFFIX, 8, client="me"))
    assert first_layer_done.wait(TIMEOUT_S)
    ticket.cancel()
    go_on.set()
    wait_until(lambda: scheduler.rows_in_flight == 0)
    assert layers == [0] and kept(scheduler, "me", PREFIX, SUFFIX, 8) is before  # nothing half-computed kept


def test_work_ahead_waits_for_requests_and_a_request_joins_it(engine):
    scheduler = Scheduler(engine, Observed())
    try:
        request = scheduler.submit(InfillJob(*PROMPTS[0], 64))
        wait_until(lambda: scheduler.num_passes > 0)
        ahead = scheduler.submit(InfillJob(*PROMPTS[1], 16, priority=Priority.AHEAD, key="next"))
        # The same job asked for as a request joins the one waiting ahead: one job, two answers.
        joined = scheduler.submit(InfillJob(*PROMPTS[1], 16, key="next"))
        assert scheduler.num_waiting == 1 and scheduler.ahead.joined == 1
        assert joined.future.result(TIMEOUT_S) is ahead.future.result(TIMEOUT_S)
        assert request.future.result(TIMEOUT_S).texts
        later = scheduler.submit(InfillJob(*PROMPTS[2], 16, priority=Priority.AHEAD))
        assert later.future.result(TIMEOUT_S).texts
        assert vars(scheduler.ahead) == {"submitted": 2, "finished": 1, "joined": 1, "preempted": 0}
    finally:
        scheduler.close()
    # The request and the joined job shared passes; the later work ahead ran alone, once nothing else did.
    assert scheduler.observer.passes[-1][0] == 1


def test_a_request_stops_work_ahead_in_its_first_pass_and_the_work_starts_again(engine, monkeypatch):
    scheduler = Scheduler(engine)
    try:
        started, go_on = threading.Event(), threading.Event()
        layer_zero = engine.model.model.layers[0].forward

        def pause_once(*args, **kwargs):
            out = layer_zero(*args, **kwargs)
            if not started.is_set():
                started.set()
                go_on.wait(TIMEOUT_S)
            return out

        monkeypatch.setattr(engine.model.model.layers[0], "forward", pause_once)
        ahead = scheduler.submit(InfillJob(*PROMPTS[2], 16, priority=Priority.AHEAD))
        assert started.wait(TIMEOUT_S)
        request = scheduler.submit(InfillJob(*PROMPTS[3], 16))
        go_on.set()
        assert request.future.result(TIMEOUT_S).texts
        alone = engine.infill(*PROMPTS[2], 16)
        assert ahead.future.result(TIMEOUT_S).texts == (alone.text,)
        assert scheduler.ahead.preempted == 1
    finally:
        scheduler.close()


def test_a_job_the_model_cannot_take_fails_alone(scheduler):
    with pytest.raises(ValueError, match="max_position_embeddings"):
        answer(scheduler, InfillJob("x = 1\n" * 3000, "", 8))
    assert answer(scheduler, InfillJob(*PROMPTS[3], 8)).texts


def test_bad_jobs_are_refused():
    with pytest.raises(ValueError, match="temperature"):
        InfillJob("x", "", 8, temperatures=())
    with pytest.raises(ValueError, match="max_tokens"):
        InfillJob("x", "", -1)


def test_the_store_keeps_the_best_match_within_its_budget(engine):
    store = CanvasStore(budget_bytes=10**9)
    canvases = []
    for prefix, suffix in PROMPTS[:3]:
        run = engine.start(InfillJob(prefix, suffix, 8, SERVED))
        run_alone(run.blockwise)
        canvases.append(run.kept())
    for canvas in canvases:
        store.put("me", canvas, None)
    ids, span = engine.layout(PROMPTS[1][0] + "    ", PROMPTS[1][1], 8)
    key, best = store.best("me", ids, span)
    assert best is canvases[1]
    store.put("me", canvases[1], key)  # the successor replaces the entry it started from
    assert len(store) == 3
    store.budget_bytes = canvases[0].cache.num_bytes
    store.put("you", canvases[0], None)
    assert list(store._entries) == [("you", 4)]
    assert store.best("me", ids, span) is None


def test_loading_runs_on_a_thread_that_has_ended_when_it_returns(tiny_checkpoint, monkeypatch) -> None:
    # The scheduler's thread must be the only live one that ran torch's parallel kernels (coda_engine.threads).
    from coda_engine import engine as engine_module
    from coda_engine.errors import CheckpointError

    loaders = []
    load_model = engine_module.load_model

    def recording(*args, **kwargs):
        loaders.append(threading.current_thread())
        return load_model(*args, **kwargs)

    monkeypatch.setattr(engine_module, "load_model", recording)
    Engine.from_pretrained(tiny_checkpoint)
    (loader,) = loaders
    assert loader is not threading.current_thread() and not loader.is_alive()
    with pytest.raises(CheckpointError, match="model folder not found"):  # the loader's errors reach the caller
        Engine.from_pretrained(tiny_checkpoint / "missing")
