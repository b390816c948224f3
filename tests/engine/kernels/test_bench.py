"""The kernel benchmark's arithmetic and table, and its command line on a machine without CUDA."""

from __future__ import annotations

import pytest
import torch

from coda_engine.tools.kernel_bench import KernelRow, confidence_bytes, format_kernel_table, main, reveal_bytes


def test_bytes_and_bandwidth_arithmetic() -> None:
    # 64 rows of the CoDA vocabulary in bf16 plus int64 token and three fp32 statistics per row.
    assert confidence_bytes(64, 151936, torch.bfloat16) == 64 * 151936 * 2 + 64 * 20
    assert confidence_bytes(2, 10, torch.float32) == 2 * 10 * 4 + 2 * 20
    assert reveal_bytes(8, 1024) == 8 * 1024 * 28 + 8 * 9
    row = KernelRow("confidence_stats triton", "64x151936 bfloat16", eager_ms=0.05, graph_ms=0.01,
                    num_bytes=40_000_000, copy_gb_per_s=5000.0)
    assert abs(row.gb_per_s - 4000.0) < 1e-6
    assert abs(row.share_of_copy - 0.8) < 1e-9


def test_table_compares_each_kernel_with_its_torch_row() -> None:
    rows = [KernelRow("confidence_stats triton", "4x8 bfloat16", 0.02, 0.01, 10**7, 4000.0),
            KernelRow("confidence_stats torch eager", "4x8 bfloat16", 0.2, 0.05, 10**7, 4000.0),
            KernelRow("reveal_by_confidence triton", "8x1024", 0.03, 0.006, 229_448, 4000.0)]
    table = format_kernel_table(rows)
    lines = table.splitlines()
    assert lines[2] == "| confidence_stats triton | 4x8 bfloat16 | 0.0200 | 0.0100 | 1000 | 25% | 5.0x |"
    assert lines[3].endswith("| 1.0x |")
    assert lines[4].endswith("| - |"), "no torch row for the reveal kernel in this table"
    assert lines[-1] == "device-to-device copy: 4000 GB/s (read + write of 1024 MiB)"


def test_command_without_cuda_is_one_line_error(capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device; the benchmark itself runs here")
    assert main(["--rows", "4"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == "coda_engine.tools.kernel_bench: no CUDA device is available"
    assert main(["--device", "cpu"]) == 2
    assert "needs a CUDA device" in capsys.readouterr().err
    assert main(["--rows", "0"]) == 2
