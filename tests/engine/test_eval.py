"""The evaluation harness: task loading, truncation, the sandbox on its own, canonical scoring, and the CLI."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from coda_engine.tools.evaluation.candidate import build_program, is_exact_match, truncate_completion
from coda_engine.tools.evaluation.progress import ProgressBar
from coda_engine.tools.evaluation.runner import Generation, score_generation
from coda_engine.tools.evaluation.sandbox import SandboxLimits, execute_program, probe_isolation
from coda_engine.tools.evaluation.tasks import TASK_NAMES, TaskDataError, load_problems, parse_task_names

FAST_LIMITS = SandboxLimits(timeout_s=3.0)


# --- tasks ---------------------------------------------------------------------------------------------------

def test_task_names_accept_repeats_and_commas_in_first_seen_order() -> None:
    assert parse_task_names(["multi-line,single-line", "single-line", "humaneval"]) == [
        "multi-line", "single-line", "humaneval"]


def test_unknown_task_name_is_rejected() -> None:
    with pytest.raises(TaskDataError, match="unknown task 'two-line'"):
        parse_task_names(["single-line,two-line"])


@pytest.mark.parametrize("task", TASK_NAMES)
def test_problems_load_with_offset_and_limit(task: str, humaneval_dir: Path) -> None:
    first_three = load_problems(task, humaneval_dir, limit=3)
    assert load_problems(task, humaneval_dir, offset=1, limit=2) == first_three[1:]
    assert all(problem.prefix and problem.canonical_middle and problem.entry_point for problem in first_three)
    assert all((problem.suffix == "") == (task == "humaneval") for problem in first_three)


def test_missing_data_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(TaskDataError, match="HumanEval-SingleLineInfilling.jsonl.gz"):
        load_problems("single-line", tmp_path)


# --- truncation and assembly ---------------------------------------------------------------------------------

def test_single_line_keeps_the_first_line() -> None:
    assert truncate_completion("single-line", "    x = 1\n    y = 2\n", "    return x\n") == "    x = 1\n"
    assert truncate_completion("single-line", "    x = 1", "") == "    x = 1\n"


def test_multi_line_drops_a_tail_that_repeats_the_suffix() -> None:
    suffix = "\n    return a + b\n\n"
    assert truncate_completion("multi-line", "    a = 1\n    return a + b\n", suffix) == "    a = 1\n"
    # the span ran out in the middle of the repeated line
    assert truncate_completion("multi-line", "    a = 1\n    retur", suffix) == "    a = 1\n"
    # a repeat followed by more code is the model's own, and a deeper-indented repeat is another statement
    assert truncate_completion("multi-line", "    return a + b\n    a = 1\n", suffix) == "    return a + b\n    a = 1\n"
    assert truncate_completion("multi-line", "        return a + b", suffix) == "        return a + b\n"


def test_humaneval_stops_at_a_new_top_level_statement() -> None:
    text = "    return 1\n\n\ndef other():\n    pass\n"
    assert truncate_completion("humaneval", text, "") == "    return 1\n\n"


def test_random_span_keeps_the_text() -> None:
    assert truncate_completion("random-span-light", "x)\n    y", "z") == "x)\n    y"


@pytest.mark.parametrize("task", TASK_NAMES)
def test_truncation_keeps_every_canonical_middle_whole(task: str, humaneval_dir: Path) -> None:
    cut = [problem.task_id for problem in load_problems(task, humaneval_dir)
           if truncate_completion(task, problem.canonical_middle, problem.suffix) != problem.canonical_middle]
    assert cut == []


def test_exact_match_ignores_surrounding_whitespace(humaneval_dir: Path) -> None:
    problem = load_problems("single-line", humaneval_dir, limit=1)[0]
    assert is_exact_match(problem, "\n" + problem.canonical_middle.strip() + "  \n")
    assert not is_exact_match(problem, "    pass\n")


# --- the sandbox, without a model ----------------------------------------------------------------------------

def test_canonical_solutions_pass_in_the_sandbox(humaneval_dir: Path) -> None:
    for problem in load_problems("humaneval", humaneval_dir, limit=3):
        result = execute_program(build_program(problem, problem.canonical_middle), FAST_LIMITS)
        assert result.status == "passed", (problem.task_id, result.output)


def test_wrong_solution_fails_with_the_assertion(humaneval_dir: Path) -> None:
    problem = load_problems("humaneval", humaneval_dir, limit=1)[0]  # has_close_elements: True and False cases
    result = execute_program(build_program(problem, "    return False\n"), FAST_LIMITS)
    assert result.status == "failed"
    assert result.reason == "AssertionError"


def test_infinite_loop_times_out_within_the_limit() -> None:
    limits = SandboxLimits(timeout_s=1.0)
    started = time.perf_counter()
    result = execute_program("while True:\n    pass\n", limits)
    assert result.status == "timeout"
    assert time.perf_counter() - started < limits.timeout_s + 2.0


def test_huge_allocation_is_refused() -> None:
    result = execute_program(f"block = bytearray({4 * SandboxLimits().memory_bytes})\n", FAST_LIMITS)
    assert result.status == "failed"
    assert result.reason == "MemoryError"


FORK_BOMB = """\
import os, sys, time
print(os.path.abspath("candidate.py"), flush=True)
num_children = 0
for _ in range(300):
    try:
        pid = os.fork()
    except BlockingIOError:
        print("fork refused after", num_children, flush=True)
        sys.exit(1)
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    num_children += 1
print("forked", num_children, flush=True)
time.sleep(60)
"""


def test_fork_bomb_is_stopped_and_leaves_no_process() -> None:
    started = time.perf_counter()
    result = execute_program(FORK_BOMB, FAST_LIMITS)
    assert result.status != "passed"
    assert time.perf_counter() - started < FAST_LIMITS.timeout_s + 2.0
    if probe_isolation().enforces_process_limit:
        assert "fork refused after" in result.output
    program_path = result.output.splitlines()[0].encode()
    deadline = time.monotonic() + 2.0  # SIGKILL is delivered asynchronously
    while (survivors := _processes_running(program_path)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert survivors == []


def _processes_running(program_path: bytes) -> list[str]:
    pids = []
    for entry in os.scandir("/proc"):
        try:
            if entry.name.isdigit() and program_path in Path(entry.path, "cmdline").read_bytes():
                pids.append(entry.name)
        except OSError:  # ended while we looked
            pass
    return pids


def test_written_files_stay_in_the_deleted_temporary_folder(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    program = (
        "import os, pathlib, tempfile\n"
        "pathlib.Path('relative.txt').write_text('x')\n"
        "handle, temp_file = tempfile.mkstemp()\n"
        "home_file = pathlib.Path.home() / 'home.txt'\n"
        "home_file.write_text('x')\n"
        "print(os.getcwd(), os.path.abspath('relative.txt'), temp_file, home_file, sep='\\n')\n"
    )
    result = execute_program(program, FAST_LIMITS)
    assert result.status == "passed", result.output
    workdir, *written = result.output.splitlines()
    assert all(Path(path).parent == Path(workdir) for path in written)
    assert not Path(workdir).exists()
    assert list(tmp_path.iterdir()) == []


def test_network_is_unreachable() -> None:
    if not probe_isolation().has_network_namespace:
        pytest.skip("unshare is unavailable here, so the sandbox cannot take the network away")
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        program = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        result = execute_program(program, FAST_LIMITS)
    assert result.status == "failed"
    assert "Error" in result.reason


# --- scoring path with canonical middles ---------------------------------------------------------------------

@pytest.mark.parametrize("task", TASK_NAMES)
def test_canonical_middles_score_pass_at_1_of_one(task: str, humaneval_dir: Path) -> None:
    """Spread over the file so that first, middle and last lines of functions are all covered."""
    problems = [load_problems(task, humaneval_dir, offset=offset, limit=1)[0] for offset in (0, 7, 50, 120)]
    results = [score_generation(problem, Generation(problem.canonical_middle, 0.0, 0), FAST_LIMITS)
               for problem in problems]
    assert [(r.task_id, r.status, r.reason) for r in results] == [(p.task_id, "passed", "") for p in problems]
    assert all(result.is_exact_match for result in results)


def test_progress_bar_counts_to_the_total() -> None:
    stream = io.StringIO()
    progress = ProgressBar(3, "single-line", stream)
    for _ in range(3):
        progress.advance()
    progress.close()
    assert stream.getvalue().count("\r") == 4
    assert "single-line: 3/3" in stream.getvalue().rsplit("\r", 1)[1]


# --- the command line ----------------------------------------------------------------------------------------

def test_missing_data_file_exits_with_one_line(tmp_path: Path, tiny_checkpoint: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from coda_engine.tools.eval import main

    assert main(["--model", str(tiny_checkpoint), "--data-dir", str(tmp_path)]) != 0
    error_lines = capsys.readouterr().err.strip().splitlines()
    assert len(error_lines) == 1 and "HumanEval-SingleLineInfilling.jsonl.gz" in error_lines[0]


def test_bad_model_path_exits_with_one_line(tmp_path: Path, humaneval_dir: Path) -> None:
    """Through a real process, so that log lines written to stderr before the failure would count too."""
    command = [sys.executable, "-m", "coda_engine.tools.eval", "--model", str(tmp_path / "absent"),
               "--data-dir", str(humaneval_dir)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert completed.returncode != 0
    error_lines = completed.stderr.strip().splitlines()
    assert len(error_lines) == 1 and "absent" in error_lines[0]


def test_bad_sampling_settings_exit_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from coda_engine.tools.eval import main

    assert main(["--model", "unused", "--max-new-tokens", "8", "--steps", "9"]) != 0
    assert capsys.readouterr().err == "error: steps (9) must not exceed the span (8 tokens)\n"


@pytest.mark.slow
def test_cli_writes_consistent_json_and_markdown(tiny_checkpoint: Path, humaneval_dir: Path,
                                                 tmp_path: Path) -> None:
    json_path, markdown_path = tmp_path / "report.json", tmp_path / "report.md"
    command = [sys.executable, "-m", "coda_engine.tools.eval", "--model", str(tiny_checkpoint),
               "--data-dir", str(humaneval_dir), "--task", "single-line,humaneval", "--limit", "3",
               "--max-new-tokens", "8", "--steps", "4", "--seed", "0", "--jobs", "2", "--timeout", "3",
               "--output", str(json_path), "--markdown", str(markdown_path)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr

    report = json.loads(json_path.read_text())
    assert report["settings"]["max_new_tokens"] == 8 and report["settings"]["steps"] == 4
    assert [row["task"] for row in report["summary"]] == ["single-line", "humaneval"]
    for row in report["summary"]:
        problems = [p for p in report["problems"] if p["task"] == row["task"]]
        assert row["num_problems"] == len(problems) == 3
        assert row["num_passed"] == sum(p["status"] == "passed" for p in problems)
        assert row["num_exact_match"] == sum(p["is_exact_match"] for p in problems)
        assert row["pass_at_1"] == row["num_passed"] / 3
        assert row["generation_ms_mean"] > 0
        assert all(p["num_forward_passes"] >= 1 for p in problems)
    single_line = [p for p in report["problems"] if p["task"] == "single-line"]
    assert all(p["completion"].count("\n") == 1 for p in single_line)

    markdown = markdown_path.read_text()
    assert completed.stdout == markdown
    table_rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert len(table_rows) == 3  # header and one row per task
    assert table_rows[1].startswith("| single-line | 3 | ")
    assert "single-line: 3/3" in completed.stderr


def test_a_problem_the_engine_refuses_fails_alone(tiny_checkpoint: Path, humaneval_dir: Path) -> None:
    from dataclasses import replace

    from coda_engine import Engine
    from coda_engine.params import InfillParams
    from coda_engine.tools.evaluation.runner import InfillSettings, run_task

    engine = Engine.from_pretrained(tiny_checkpoint)
    normal = load_problems("single-line", humaneval_dir, 0, 1)[0]
    too_long = replace(normal, task_id="too-long", prefix="x = 1\n" * 9000 + normal.prefix)
    progress = ProgressBar(2, "single-line", stream=io.StringIO())
    results = run_task(engine, [too_long, normal], InfillSettings(4, InfillParams(steps=2)), FAST_LIMITS, 2,
                       progress)
    assert [r.task_id for r in results] == ["too-long", normal.task_id]
    assert results[0].status == "failed" and "max_position_embeddings" in results[0].reason
    assert results[1].num_forward_passes == 2 and results[1].execution_ms > 0


def test_keystrokes_run_the_typing_calls_first_and_reuse_their_cache(tiny_checkpoint: Path, humaneval_dir: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from coda_engine import Engine
    from coda_engine.params import InfillParams
    from coda_engine.scheduler import Scheduler
    from coda_engine.tools.evaluation.runner import InfillSettings, generate

    engine = Engine.from_pretrained(tiny_checkpoint)
    problem = load_problems("single-line", humaneval_dir, 0, 1)[0]
    starts: list[int] = []
    start = Scheduler._start

    def spy(scheduler: Scheduler, entry) -> None:
        start(scheduler, entry)
        starts.append(entry.run.reused)

    monkeypatch.setattr(Scheduler, "_start", spy)
    generation = generate(engine, problem, InfillSettings(4, InfillParams(steps=2), keystrokes=3))
    assert generation.error is None and generation.num_forward_passes >= 1
    assert len(starts) == 4 and starts[0] == 0 and all(starts[1:])  # 3 typing jobs, then the problem's
    assert InfillSettings().keystrokes == 0


def test_keystrokes_with_exact_exit_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from coda_engine.tools.eval import main

    assert main(["--model", "unused", "--exact", "--keystrokes", "2"]) != 0
    assert capsys.readouterr().err == \
        ("error: --block-size, --margin, --drifted, --near and --keystrokes are fast-path settings; drop them "
         "with --exact\n")


def test_margin_reaches_the_engine_s_cache_policy(capsys: pytest.CaptureFixture[str]) -> None:
    from coda_engine.params import InfillParams
    from coda_engine.tools.eval import _infill_settings, build_parser

    def settings(*flags: str):
        return _infill_settings(build_parser().parse_args(["--model", "unused", *flags]))

    default = InfillParams().cache
    assert settings().params.cache == default and settings("--margin", "3").params.cache == replace(default, margin=3)
    assert settings("--drifted", "0", "--near", "2").params.cache == replace(default, drifted=0, near=2)
    assert settings("--max-new-tokens", "12").params.steps == 12  # resolved for the report
