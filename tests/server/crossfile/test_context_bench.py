"""python -m coda_lsp.tools.context_bench on a small repository written here: the table, --help, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from coda_lsp.tools.context_bench import main

REPO = {
    "shop/money.py": 'def cents(amount: float) -> int:\n    """Whole cents."""\n    return round(amount * 100)\n',
    "shop/tax.py": "RATE = 0.2\n\n\ndef with_tax(amount: float) -> float:\n    return amount * (1 + RATE)\n",
    "shop/cart.py": "from shop.money import cents\nfrom shop.tax import with_tax\n\n\n"
                    "def total(prices: list[float]) -> int:\n    gross = sum(prices)\n"
                    "    taxed = with_tax(gross)\n    return cents(taxed)\n",
}


def test_prints_a_row_per_repository(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     reference_dir: Path) -> None:
    for name, text in REPO.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert main([str(tmp_path / "shop"), "--tokenizer-dir", str(reference_dir), "--tabs", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    [row] = [line for line in lines if line.startswith(f"| {tmp_path.name}/shop |")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    # cart.py's two lines using with_tax and cents; both definitions fit the share
    assert cells[1:5] == ["python", "3", "2", "100.0 %"]
    assert all(float(cell) >= 0 for cell in cells[5:])


def test_help_and_bad_input() -> None:
    run = [sys.executable, "-m", "coda_lsp.tools.context_bench"]
    assert "hit rate" in subprocess.run([*run, "--help"], capture_output=True, text=True, check=True).stdout
    missing = subprocess.run([*run, "/no/such/folder"], capture_output=True, text=True)
    assert missing.returncode != 0 and missing.stderr.strip() == \
        "coda-lsp context_bench: /no/such/folder is not a folder"
