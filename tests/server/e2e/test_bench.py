"""End to end: `python -m coda_lsp.tools.bench` drives real servers and prints its table."""

from __future__ import annotations

from pathlib import Path

import pytest

from coda_lsp.tools.bench import main

pytestmark = pytest.mark.e2e


def test_bench_prints_a_row_per_kind(tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", str(tiny_checkpoint), "--requests", "2", "--max-tokens", "8",
                 "--single-line-tokens", "4", "--steps", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split(" | ")[0]: line.split(" | ") for line in lines if " | " in line}
    assert set(rows) >= {"single-line", "multi-line", "typing"}
    for kind in ("single-line", "multi-line", "typing"):
        assert rows[kind][1] == "2" and all(float(cell) >= 0 for cell in rows[kind][2:])


@pytest.mark.parametrize(("switch", "enabled"), [("on", True), ("off", False)])
def test_cross_file_switch(tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str], switch: str,
                           enabled: bool) -> None:
    assert main(["--model", str(tiny_checkpoint), "--requests", "2", "--max-tokens", "8", "--single-line-tokens",
                 "4", "--steps", "2", "--kinds", "typing", "--cross-file", switch]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    files = int(header.split(f"cross_file {enabled} (")[1].split(" files indexed")[0])
    assert (files > 10) == enabled  # the workspace's modules, indexed only when on
