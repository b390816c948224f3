"""python -m coda_engine.tools.eval: pass@1 and exact match on HumanEval infilling, as JSON and a Markdown table.

The parts live in `coda_engine.tools.evaluation`: tasks (data), candidate (truncation and assembly), sandbox
(execution), runner (generation and parallel scoring), report (summaries and rendering). This module is
the command line only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from coda_engine import CheckpointError, Engine
from coda_engine.tools.evaluation.progress import ProgressBar
from coda_engine.cache import plan_blocks
from coda_engine.engine import fast_sampling
from coda_engine.tools.evaluation.report import agreement, build_report, render_markdown, summarize_task
from coda_engine.tools.evaluation.runner import InfillSettings, ProblemResult, run_task
from coda_engine.tools.evaluation.sandbox import SandboxLimits, probe_isolation
from coda_engine.tools.evaluation.tasks import TASK_NAMES, Problem, TaskDataError, TaskName, load_problems, \
    parse_task_names
from coda_engine.tools.files import HUMANEVAL_DIR
from coda_engine.generate import SamplingParams
from coda_engine.params import InfillParams

log = logging.getLogger("coda_engine.tools.eval")
DEFAULT = InfillParams()


def build_parser() -> argparse.ArgumentParser:
    defaults = InfillSettings()
    parser = argparse.ArgumentParser(
        prog="python -m coda_engine.tools.eval",
        description="Infill HumanEval problems with a CoDA checkpoint; score pass@1 (sandboxed) and exact match.")
    parser.add_argument("--model", required=True, help="checkpoint folder (HF layout)")
    parser.add_argument("--task", action="append", default=None, metavar="NAME",
                        help=f"{', '.join(TASK_NAMES)}; repeat or comma-separate (default: single-line)")
    parser.add_argument("--data-dir", type=Path, default=HUMANEVAL_DIR,
                        help="folder with the HumanEval*.jsonl.gz files (default: the copy shipped with the tools)")
    parser.add_argument("--limit", type=_count(0), default=None, help="at most this many problems per task")
    parser.add_argument("--offset", type=_count(0), default=0, help="skip this many problems per task")
    parser.add_argument("--max-new-tokens", type=_count(1), default=defaults.max_new_tokens)
    parser.add_argument("--steps", type=_count(1), default=None,
                        help="denoising steps (default: the fast path's; --max-new-tokens with --exact)")
    parser.add_argument("--alg", default=None, help="reveal rule (default: the fast path's; entropy with --exact)")
    parser.add_argument("--exact", action="store_true",
                        help="CoDA's reference loop (no cache) instead of the engine's default fast path")
    parser.add_argument("--block-size", type=_count(1), default=None,
                        help=f"fast path's block (default {DEFAULT.block_size})")
    parser.add_argument("--margin", type=_count(0), default=None,
                        help=f"fast path's positions recomputed each side of the block (default "
                             f"{DEFAULT.cache.margin})")
    parser.add_argument("--drifted", type=_count(0), default=None,
                        help=f"fast path, CPU: instead of the margin, recompute --near positions each side of the "
                             f"block and this many more whose keys most likely drifted (default "
                             f"{DEFAULT.cache.drifted}; 0: the margin)")
    parser.add_argument("--near", type=_count(0), default=None,
                        help=f"fast path, CPU, with --drifted: positions recomputed each side of the block (default "
                             f"{DEFAULT.cache.near})")
    parser.add_argument("--keystrokes", type=_count(0), default=0, metavar="N",
                        help="fast path: before each problem, infill at its cursor less its last N..1 characters, "
                             "each call reusing the previous one's cache, as typing does (default 0: no reuse)")
    parser.add_argument("--compare-with", type=Path, default=None, metavar="REPORT",
                        help="a JSON report of another run on the same problems: print the share of identical "
                             "answers")
    parser.add_argument("--temperature", type=float, default=defaults.temperature)
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--window", type=_count(1), default=None,
                        help="reveal only among the leftmost N masks each step (1: left to right; default: anywhere)")
    parser.add_argument("--fixed-length", action="store_true",
                        help="forbid pad/end tokens: the model must fill the whole span (the fixed-length baseline)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="default: the engine's (fp32 on CPU)")
    parser.add_argument("--timeout", type=_positive_float, default=SandboxLimits().timeout_s,
                        help="seconds each candidate program may run")
    parser.add_argument("--jobs", type=_count(1), default=os.cpu_count() or 1,
                        help="candidate programs run at once (default: CPU count)")
    parser.add_argument("--output", type=Path, default=None, help="write the JSON report here")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the Markdown table here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = _infill_settings(args)
        if args.compare_with is not None and not args.compare_with.is_file():
            raise ValueError(f"--compare-with {args.compare_with}: no such report")
        problems_by_task = _load_all(args)
        engine = Engine.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    # ValueError: sampling settings, --device or --dtype the engine rejects.
    except (TaskDataError, CheckpointError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    isolation = probe_isolation()
    # Logged only once everything loaded, so that a bad input leaves exactly one line on stderr.
    log.info("problems: %s", ", ".join(f"{task} {len(problems)}" for task, problems in problems_by_task.items()))
    log.info("model %s on %s (%s); sandbox: network namespace %s, process limit %s", args.model, args.device,
             engine.precision.name, "yes" if isolation.has_network_namespace else "NO",
             "enforced" if isolation.enforces_process_limit else "NOT enforced (uid 0)")
    report = _evaluate(args, engine, settings, problems_by_task)
    markdown = render_markdown(report)
    if args.compare_with is not None:
        count, identical, passed = agreement(report, json.loads(args.compare_with.read_text(encoding="utf-8")))
        markdown += (f"\nAgainst `{args.compare_with}`: identical answers on {identical} of {count} problems "
                     f"({100 * identical / max(count, 1):.1f} %); passed in both: {passed}\n")
    if args.output is not None:
        args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.markdown is not None:
        args.markdown.write_text(markdown, encoding="utf-8")
    sys.stdout.write(markdown)
    return 0


def _count(minimum: int) -> Callable[[str], int]:
    """An argparse type: an int no smaller than `minimum`."""
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    parse.__name__ = "int"  # argparse names the type in its "invalid int value" message
    return parse


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _infill_settings(args: argparse.Namespace) -> InfillSettings:
    """The sampling settings, checked by the engine's own validation before hours of generation start."""
    cache_flags = {"margin": args.margin, "drifted": args.drifted, "near": args.near}
    cache_given = any(value is not None for value in cache_flags.values())
    if args.exact and (args.block_size is not None or args.keystrokes or cache_given):
        raise ValueError("--block-size, --margin, --drifted, --near and --keystrokes are fast-path settings; drop "
                         "them with --exact")
    cache = replace(DEFAULT.cache, **{name: value for name, value in cache_flags.items() if value is not None})
    params = InfillParams(steps=args.steps, alg=args.alg or DEFAULT.alg, threshold=args.threshold,
                          block_size=args.block_size or DEFAULT.block_size, cache=cache, exact=args.exact,
                          variable_length=not args.fixed_length, window=args.window)
    # Resolved here rather than left to the engine, so the report states the number of steps.
    params = replace(params, steps=params.num_steps(args.max_new_tokens))
    if params.exact:
        SamplingParams(params.steps, params.alg, args.temperature, threshold=params.threshold, window=params.window)
    else:
        plan_blocks(0, args.max_new_tokens, min(params.block_size, args.max_new_tokens), params.steps)
        fast_sampling(params, args.max_new_tokens)
    return InfillSettings(args.max_new_tokens, params, args.temperature, args.seed, args.keystrokes)


def _load_all(args: argparse.Namespace) -> dict[TaskName, list[Problem]]:
    tasks = parse_task_names(args.task or ["single-line"])
    return {task: load_problems(task, args.data_dir, args.offset, args.limit) for task in tasks}


def _evaluate(args: argparse.Namespace, engine: Engine, settings: InfillSettings,
              problems_by_task: dict[TaskName, list[Problem]]) -> dict:
    limits = SandboxLimits(timeout_s=args.timeout)
    started = time.perf_counter()
    summaries, results = [], []
    for task, problems in problems_by_task.items():
        task_started = time.perf_counter()
        progress = ProgressBar(len(problems), task)
        task_results: list[ProblemResult] = run_task(engine, problems, settings, limits, args.jobs, progress)
        progress.close()
        summaries.append(summarize_task(task, task_results, time.perf_counter() - task_started))
        results.extend(task_results)
    dtype = engine.precision.name  # the resolved one, also when --dtype was left out or was auto
    return build_report(args.model, settings, args.device, dtype, limits, probe_isolation(), args.jobs,
                        summaries, results, time.perf_counter() - started)


if __name__ == "__main__":
    sys.exit(main())
