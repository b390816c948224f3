"""Per-task summaries of problem results, and the run report as a JSON-ready dict and a Markdown table."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

from .runner import InfillSettings, ProblemResult
from .sandbox import Isolation, SandboxLimits
from .tasks import TaskName


@dataclass(frozen=True)
class TaskSummary:
    task: TaskName
    num_problems: int
    num_passed: int
    num_timeouts: int
    num_exact_match: int
    pass_at_1: float  # one greedy sample per problem, so pass@1 is the pass rate
    exact_match: float
    generation_ms_p50: float
    generation_ms_mean: float
    num_forward_passes_mean: float
    window_rows_mean: float  # positions a window pass computed, over every window pass of the task (0: none)
    wall_s: float  # generation plus the executions that did not overlap it


def summarize_task(task: TaskName, results: list[ProblemResult], wall_s: float) -> TaskSummary:
    num_problems = max(len(results), 1)  # the rates of no problems are 0, not a division by zero
    generation_ms = [result.generation_ms for result in results] or [0.0]
    num_passed = sum(result.is_passed for result in results)
    num_exact_match = sum(result.is_exact_match for result in results)
    return TaskSummary(
        task=task, num_problems=len(results), num_passed=num_passed, num_exact_match=num_exact_match,
        num_timeouts=sum(result.status == "timeout" for result in results),
        pass_at_1=num_passed / num_problems, exact_match=num_exact_match / num_problems,
        generation_ms_p50=statistics.median(generation_ms), generation_ms_mean=statistics.fmean(generation_ms),
        num_forward_passes_mean=statistics.fmean([r.num_forward_passes for r in results] or [0]),
        window_rows_mean=statistics.fmean([rows for r in results for rows in r.window_rows] or [0]), wall_s=wall_s)


def build_report(model_path: str, settings: InfillSettings, device: str, dtype: str,
                 limits: SandboxLimits, isolation: Isolation, num_jobs: int, summaries: list[TaskSummary],
                 results: list[ProblemResult], wall_s: float) -> dict[str, Any]:
    return {
        "model": model_path,
        "settings": {**settings.flat(), "device": device, "dtype": dtype},
        "sandbox": {**asdict(limits), "has_network_namespace": isolation.has_network_namespace,
                    "enforces_process_limit": isolation.enforces_process_limit},
        "num_jobs": num_jobs,
        "wall_s": wall_s,
        "summary": [asdict(summary) for summary in summaries],
        "problems": [asdict(result) for result in results],
    }


def agreement(report: dict[str, Any], other: dict[str, Any]) -> tuple[int, int, int]:
    """(problems in both reports, identical raw answers among them, passed in both): how far two runs on the
    same problems (the fast path and the exact loop, say) agree."""
    theirs = {(p["task"], p["task_id"]): p for p in other["problems"]}
    both = [(p, theirs[(p["task"], p["task_id"])]) for p in report["problems"] if (p["task"], p["task_id"]) in theirs]
    identical = sum(ours["raw_text"] == other_one["raw_text"] for ours, other_one in both)
    passed = sum(ours["status"] == other_one["status"] == "passed" for ours, other_one in both)
    return len(both), identical, passed


def render_markdown(report: dict[str, Any]) -> str:
    """A settings line and one table row per task, from a report made by `build_report`."""
    settings = ", ".join(f"{name}={value}" for name, value in report["settings"].items())
    lines = [f"model `{report['model']}`; {settings}; total wall {report['wall_s']:.1f} s", "",
             "| task | problems | pass@1 | passed | exact match | timeouts | gen ms p50 | gen ms mean "
             "| forward passes mean | window rows mean | wall s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {row['task']} | {row['num_problems']} | {row['pass_at_1']:.1%} | {row['num_passed']} "
              f"| {row['exact_match']:.1%} | {row['num_timeouts']} | {row['generation_ms_p50']:.0f} "
              f"| {row['generation_ms_mean']:.0f} | {row['num_forward_passes_mean']:.1f} "
              f"| {row.get('window_rows_mean', 0):.1f} | {row['wall_s']:.1f} |"
              for row in report["summary"]]
    return "\n".join(lines) + "\n"
