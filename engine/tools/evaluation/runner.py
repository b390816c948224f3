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

if TYPE_CHECKING:
    from coda_engine import Engine


@dataclass(frozen=True)
class InfillSettings:
    """The per-request sampling settings, passed to `Engine.infill` as keyword arguments."""

    max_new_tokens: int = 64
    steps: int | None = None  # None: the engine's default for the path
    alg: str | None = None  # None: the engine's default (the fast path's; entropy when exact)
    exact: bool = False  # CoDA's reference loop instead of the fast (cached, block-wise) path
    block_size: int | None = None  # fast path only; None: the engine's default
    temperature: float = 0.0
    threshold: float | None = None
    seed: int | None = None  # the same seed for every problem, so a run is reproducible problem by problem
    variable_length: bool = True  # False: pad/end tokens forbidden, the model fills the whole span
    window: int | None = None  # reveal among the leftmost `window` masks only (1: left to right)
    # Fast path: first infill at the cursor less its last n, n - 1, ..., 1 characters, each call reusing the
    # last one's cache (as-you-type), and the problem's own call reusing theirs; 0: every call starts afresh.
    keystrokes: int = 0
    margin: int | None = None  # fast path: positions recomputed each side of the block; None: the engine's


@dataclass(frozen=True)
class Generation:
    """What the model returned for one problem, before truncation."""

    raw_text: str
    generation_ms: float
    num_forward_passes: int
    error: str | None = None  # why the engine refused the problem (e.g. a canvas longer than the model's positions)


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

    @property
    def is_passed(self) -> bool:
        return self.status == "passed"


def generate(engine: Engine, problem: Problem, settings: InfillSettings) -> Generation:
    """The engine's middle; a problem the engine refuses is one failed problem, not the end of the run."""
    options = asdict(settings)
    keystrokes, margin = options.pop("keystrokes"), options.pop("margin")
    try:
        if keystrokes or margin is not None:
            from coda_engine.engine import FAST

            policy = replace(FAST.cache, reuse=keystrokes + 1) if keystrokes else FAST.cache
            options["cache"] = policy if margin is None else replace(policy, margin=margin)
        if keystrokes:
            engine.last_canvas = None
            for cut in range(min(keystrokes, len(problem.prefix) - 1), 0, -1):
                engine.infill(problem.prefix[:-cut], problem.suffix, **options)
        result = engine.infill(problem.prefix, problem.suffix, **options)
    except ValueError as error:
        return Generation("", 0.0, 0, error=str(error))
    return Generation(result.text, result.elapsed_ms, result.num_forward_passes)


def score_generation(problem: Problem, generation: Generation, limits: SandboxLimits) -> ProblemResult:
    """Truncate, assemble, execute and compare one generation."""
    completion = truncate_completion(problem.task, generation.raw_text, problem.suffix)
    if generation.error is not None:
        execution = ExecutionResult("failed", f"not generated: {generation.error}", 0.0, "")
    else:
        execution = execute_program(build_program(problem, completion), limits)
    return ProblemResult(
        task=problem.task,
        task_id=problem.task_id,
        completion=completion,
        raw_text=generation.raw_text,
        status=execution.status,
        reason=execution.reason,
        is_exact_match=is_exact_match(problem, completion),
        generation_ms=generation.generation_ms,
        num_forward_passes=generation.num_forward_passes,
        execution_ms=execution.elapsed_ms,
    )


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
