"""python -m coda_engine.tools.bench: its fast-path row is the engine's default fast path, and its table."""

from __future__ import annotations

import dataclasses

import torch

from coda_engine.params import InfillParams
from coda_engine.tools.bench import Row, fast_params, format_table, parse_args


def test_the_default_fast_row_runs_the_default_parameters_margin_included() -> None:
    args = parse_args([])
    default = InfillParams()
    assert fast_params(args.steps, args.block_size, args.refresh) == dataclasses.replace(default, steps=args.steps)
    assert default.cache.margin > 0
    assert fast_params(8, refresh="block").cache == dataclasses.replace(default.cache, refresh="block")


def test_table_speed_ups_are_against_the_reference_and_autoregressive_rows() -> None:
    rows = [Row("reference loop", 1000.0, 64, 64, 100.0), Row("default fast path", 100.0, 16, 64, 120.0),
            Row("autoregressive Qwen3", 200.0, 64, 64, 90.0)]
    lines = format_table(rows).splitlines()
    assert lines[3] == "| default fast path | 100.0 | 16 | 4.00 | 640.0 | 120 | 10.00x | 2.00x |"


def test_the_cpu_suite_measures_each_format_on_the_typing_workload(reference_dir, capsys) -> None:
    from coda_engine.tools.bench import main

    assert main(["--suite", "cpu", "--preset", "tiny", "--formats", "fp32,int8", "--no-ar",
                 "--tokenizer-dir", str(reference_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (f"preset tiny on the CPU ({torch.get_num_threads()} threads): 768 + 256 tokens of "
                        f"context, a 24-token span")
    rows = [line for line in lines if line.startswith("| float32 ") or line.startswith("| int8 ")]
    assert len(rows) == 3 and all(row.count("|") == 9 and "| - | - |" in row for row in rows[:2])
    # The logit table: int8 against fp32 only; random weights are near ties, so top-1 is not asked to be high.
    quality = rows[2].split("|")
    assert len(quality) == 7 and all(cell.strip().endswith("%") for cell in quality[2:4])
    kl_first, kl_window = float(quality[4]), float(quality[5])
    assert 0 < kl_first < 1 and 0 < kl_window < 1


def test_the_cpu_suite_s_keystrokes_start_from_the_last_call_s_cache(tiny_checkpoint) -> None:
    from coda_engine import Engine
    from coda_engine.scheduler import Scheduler
    from coda_engine.tools.bench_cpu import KEYSTROKES, diffusion_rows

    engine = Engine.from_pretrained(tiny_checkpoint)
    scheduler = Scheduler(engine)
    try:
        diffusion_rows(engine, scheduler)
    finally:
        scheduler.close()
    (_, kept), = scheduler.store._entries.items()  # each keystroke's canvas replaced the one it started from
    assert kept.reuses == KEYSTROKES


def test_the_cpu_suite_rejects_unknown_formats(capsys) -> None:
    from coda_engine.tools.bench import main

    assert main(["--suite", "cpu", "--formats", "fp32,fp8"]) == 1
    assert capsys.readouterr().err.strip() == ("coda_engine.tools.bench: --formats takes auto, fp32, bf16, fp16, int8; "
                                               "got 'fp32,fp8'")


def test_the_cost_simulation_reveals_exactly_k_tokens_a_pass(reference_dir, capsys) -> None:
    from coda_engine.tools.bench import main

    assert main(["--suite", "cpu", "--preset", "tiny", "--formats", "fp32", "--no-ar", "--reveal-per-pass", "4,2",
                 "--tokenizer-dir", str(reference_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    simulated = [line.split("|") for line in lines[lines.index(next(l for l in lines if l.startswith("Cost"))) + 3:]]
    # K = 2 and K = 4 in order: 24 tokens in 12 and 6 passes, cold and at every keystroke, whatever the weights.
    assert [(cells[2].strip(), cells[3].split("(")[1], cells[4].split("(")[1]) for cells in simulated] == [
        ("2", "12) ", "12.0) "), ("4", "6) ", "6.0) ")]


def test_reveal_per_pass_takes_whole_numbers_up_to_the_span(capsys) -> None:
    from coda_engine.tools.bench import main

    assert main(["--suite", "cpu", "--reveal-per-pass", "0,2"]) == 1
    assert capsys.readouterr().err.strip() == ("coda_engine.tools.bench: --reveal-per-pass takes whole numbers from "
                                               "1 to 24, comma-separated; got '0,2'")
