"""Generate every problem's middle with the engine, one at a time, and score the candidates in parallel.

Generation stays in this process and sequential: the engine is one model and already uses every core for
a forward pass. Each candidate runs in its own sandboxed process; `jobs` threads only start those processes
and wait on them, so up to `jobs` programs run at once while the next middle is being generated. Threads
rather than a process pool of workers: a worker would have to re-import (spawn) or fork (unsafe with
torch's threads) the engine's process, and would add nothing, since the programs are processes already.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

from .candidate import build_program, is_exact_match, truncate_completion
from .progress import ProgressBar
from .sandbox import ExecutionResult, ExecutionStatus, SandboxLimits, execute_program
from .tasks import Problem, TaskName

from coda_engine.params import InfillParams

if TYPE_CHECKING:
    from coda_engine import Engine
    from coda_engine.jobs import InfillOutcome


@dataclass(frozen=True)
class InfillSettings:
    """How each problem is infilled: the span, the decoding parameters, and (fast path) the typing before it."""

    max_new_tokens: int = 64
    params: InfillParams = InfillParams()
    temperature: float = 0.0
    seed: int | None = None  # the same seed for every problem, so a run is reproducible problem by problem
    # Fast path: first infill at the cursor less its last n, n - 1, ..., 1 characters, each job starting from the
    # last one's kept canvas (as-you-type), and the problem's own job from theirs; 0: every job starts afresh.
    keystrokes: int = 0

    def flat(self) -> dict[str, object]:
        """The settings as one level of names, for the report."""
        return {"max_new_tokens": self.max_new_tokens, **asdict(self.params), "temperature": self.temperature,
                "seed": self.seed, "keystrokes": self.keystrokes}


@dataclass(frozen=True)
class Generation:
    """What the model returned for one problem, before truncation."""

    raw_text: str
    generation_ms: float
    num_forward_passes: int
    error: str | None = None  # why the engine refused the problem (e.g. a canvas longer than the model's positions)
    window_rows: tuple[int, ...] = ()  # positions each window pass computed (direct infills only)


@dataclass(frozen=True)
class ProblemResult:
    task: TaskName
    task_id: str
    completion: str
    raw_text: str
    status: ExecutionStatus
    reason: str
    is_exact_match: bool
    generation_ms: float
    num_forward_passes: int
    execution_ms: float
    window_rows: tuple[int, ...] = ()

    @property
    def is_passed(self) -> bool:
        return self.status == "passed"


def generate(engine: Engine, problem: Problem, settings: InfillSettings) -> Generation:
    """The engine's middle; a problem the engine refuses is one failed problem, not the end of the run."""
    try:
        if settings.keystrokes:
            return _typed(engine, problem, settings)
        result = engine.infill(problem.prefix, problem.suffix, settings.max_new_tokens, settings.params,
                               settings.temperature, settings.seed)
    except ValueError as error:
        return Generation("", 0.0, 0, error=str(error))
    return Generation(result.text, result.elapsed_ms, result.num_forward_passes, window_rows=result.window_rows)


def _typed(engine: Engine, problem: Problem, settings: InfillSettings) -> Generation:
    """The typing jobs, then the problem's, through a scheduler (the servers' path), each starting from the last
    one's kept canvas."""
    from coda_engine.jobs import InfillJob
    from coda_engine.scheduler import Scheduler

    params = replace(settings.params, cache=replace(settings.params.cache, reuse=settings.keystrokes + 1))
    scheduler = Scheduler(engine)
    try:
        def infill(prefix: str) -> InfillOutcome:
            job = InfillJob(prefix, problem.suffix, settings.max_new_tokens, params, (settings.temperature,),
                            settings.seed, client="typist")
            return scheduler.submit(job).future.result()

        for cut in range(min(settings.keystrokes, len(problem.prefix) - 1), 0, -1):
            infill(problem.prefix[:-cut])
        outcome = infill(problem.prefix)
    finally:
        scheduler.close()
    return Generation(outcome.texts[0], outcome.prompt_ms + outcome.predicted_ms, outcome.passes)


def score_generation(problem: Problem, generation: Generation, limits: SandboxLimits) -> ProblemResult:
    """Truncate, assemble, execute and compare one generation."""
    completion = truncate_completion(problem.task, generation.raw_text, problem.suffix)
    if generation.error is not None:
        execution = ExecutionResult("failed", f"not generated: {generation.error}", 0.0, "")
    else:
        execution = execute_program(build_program(problem, completion), limits)
    return ProblemResult(
        task=problem.task, task_id=problem.task_id, completion=completion, raw_text=generation.raw_text,
        status=execution.status, reason=execution.reason, is_exact_match=is_exact_match(problem, completion),
        generation_ms=generation.generation_ms, num_forward_passes=generation.num_forward_passes,
        execution_ms=execution.elapsed_ms, window_rows=generation.window_rows)


def run_task(engine: Engine, problems: list[Problem], settings: InfillSettings, limits: SandboxLimits,
             num_jobs: int, progress: ProgressBar) -> list[ProblemResult]:
    """Results in the order of `problems`; `progress` advances as each candidate finishes executing."""
    with ThreadPoolExecutor(max_workers=num_jobs) as pool:
        futures: list[Future[ProblemResult]] = []
        for problem in problems:
            future = pool.submit(score_generation, problem, generate(engine, problem, settings), limits)
            future.add_done_callback(lambda _: progress.advance())
            futures.append(future)
        return [future.result() for future in futures]
