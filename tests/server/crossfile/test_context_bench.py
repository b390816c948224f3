"""python -m coda_lsp.tools.context_bench on a small repository written here: the table, the two case sets, the
held-out rule, the Wilson interval, --help and one-line errors."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from coda_lsp.crossfile.service import CrossFile
from coda_lsp.documents import DocumentStore
from coda_lsp.tools.context_bench import TUNED_ON, _index_into, held_out_packages, main, sample_cases, wilson

FILLER = "".join(f"    step_{i} = {i}\n" for i in range(40))
REPO = {
    "shop/money.py": 'def cents(amount: float) -> int:\n    """Whole cents."""\n    return round(amount * 100)\n',
    "shop/tax.py": "RATE = 0.2\n\n\ndef with_tax(amount: float) -> float:\n    return amount * (1 + RATE)\n",
    "shop/cart.py": "from shop.money import cents\nfrom shop.tax import with_tax\n\n\n"
                    "def total(prices: list[float]) -> int:\n    gross = sum(prices)\n"
                    f"    taxed = with_tax(gross)\n{FILLER}    return cents(taxed)\n",
    # `cents` here is a local: it only shares its name with money.py's function, and is no case
    "shop/report.py": "def summary(cents: int) -> str:\n    return str(cents)\n",
}


def _write(root: Path) -> Path:
    for name, text in REPO.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root / "shop"


def test_prints_a_row_per_repository(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     reference_dir: Path) -> None:
    folder = _write(tmp_path)
    assert main([str(folder), "--tokenizer-dir", str(reference_dir), "--tabs", "1", "--repeat", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    [row] = [line for line in lines if line.startswith(f"| {tmp_path.name}/shop |")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    # cart.py's two lines using with_tax and cents, both also imported calls named nowhere near; both definitions
    # fit the share, and typing the lines back leaves the snippets as they were
    assert cells[1:8] == ["python", "4", "2", "100.0 % [34.2, 100.0]", "2", "100.0 % [34.2, 100.0]", "100.0 %"]
    assert all(float(cell) >= 0 for cell in cells[8:])


def test_misses_are_written_with_what_the_prompt_held(tmp_path: Path, reference_dir: Path) -> None:
    folder, misses = _write(tmp_path), tmp_path / "misses.txt"
    # a share of 8 tokens holds no snippet: every case is a miss
    assert main([str(folder), "--tokenizer-dir", str(reference_dir), "--tabs", "1", "--repeat", "1",
                 "--share", "0.008", "--misses", str(misses)]) == 0
    lines = misses.read_text().splitlines()
    assert f"{tmp_path.name}/shop all: shop/cart.py:7: with_tax -> shop/tax.py:4 | taxed = with_tax(gross) | " in lines
    assert len(lines) == 4 and all(" | " in line for line in lines)


def test_the_two_case_sets(tmp_path: Path) -> None:
    cross_file = CrossFile(DocumentStore())
    _index_into(cross_file, _write(tmp_path), 100, 1 << 20)
    uses, imported = sample_cases(cross_file, 10, random.Random(0))
    assert sorted((case.file.relative, case.line, case.name) for case in uses) == [
        ("cart.py", 6, "with_tax"), ("cart.py", 47, "cents")]
    assert sorted((case.file.relative, case.line, case.name) for case in imported) == [
        ("cart.py", 6, "with_tax"), ("cart.py", 47, "cents")]
    # named again on the line below: no longer an imported call that nothing near the cursor names
    (tmp_path / "shop/cart.py").write_text(REPO["shop/cart.py"].replace("step_0 = 0", "step_0 = with_tax"))
    _index_into(cross_file, tmp_path / "shop", 100, 1 << 20)
    _, imported = sample_cases(cross_file, 10, random.Random(0))
    assert [case.name for case in imported] == ["cents"]


def test_a_case_is_defined_where_the_file_s_import_of_it_says(tmp_path: Path) -> None:
    files = {
        "pkg/__init__.py": "from .core import *\n",
        "pkg/core.py": "def make() -> int:\n    return 1\n",
        "pkg/stubs.py": "nan = float('nan')\n\n\ndef helper() -> None:\n    pass\n",
        "pkg/util/__init__.py": "",
        "pkg/util/text.py": "def title(s: str) -> str:\n    return s\n",
        "pkg/settings.py": "settings = {}\n",
        "pkg/app.py": ("import numpy as np\nimport pkg\nfrom .util import text\nfrom .core import helper\n"
                       "from . import settings\n\na = pkg.make()\nb = np.nan\nc = text.title('x')\nd = helper()\n"
                       "e = settings.get('x')\nf = make()\n"),
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    cross_file = CrossFile(DocumentStore())
    _index_into(cross_file, tmp_path / "pkg", 100, 1 << 20)
    uses, _ = sample_cases(cross_file, 10, random.Random(0))
    # `pkg.make` is defined in the package `import pkg` names, `text.title` in the submodule imported by name;
    # `np.nan` is numpy's, not stubs.py's; `helper` is imported from core.py, which does not define it;
    # `settings` is the submodule, not the dict in it; `import pkg` binds `pkg` only, not a plain `make`
    assert sorted((case.line, case.name, case.target[0].relative) for case in uses) == [
        (6, "make", "core.py"), (8, "title", "util/text.py")]


def test_the_held_out_rule_takes_the_largest_pure_python_packages_never_tuned_on(tmp_path: Path) -> None:
    def package(name: str, num_files: int, compiled: bool = False) -> None:
        for number in range(num_files):
            (tmp_path / name / f"m{number}.py").parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name / f"m{number}.py").write_text("")
        (tmp_path / name / "__init__.py").write_text("")
        if compiled:
            (tmp_path / name / "_speedups.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    package("networkx", 50)    # tuned on: never held out
    package("fastlib", 40, compiled=True)
    package("big", 30)
    package("small", 5)
    package("middle", 10)
    (tmp_path / "loose_module.py").write_text("")
    (tmp_path / "not_a_package").mkdir()
    assert "networkx" in TUNED_ON
    assert [p.name for p in held_out_packages(tmp_path, 2)] == ["big", "middle"]
    assert [p.name for p in held_out_packages(tmp_path, 9)] == ["big", "middle", "small"]


def test_wilson_interval() -> None:
    low, high = wilson(70, 100)
    assert (round(low, 3), round(high, 3)) == (0.604, 0.781)  # the textbook values
    # no hit in n: the upper end is z^2 / (n + z^2), where p +- 1.96 sd would say 0
    assert wilson(0, 10) == (0.0, pytest.approx(1.959964 ** 2 / (10 + 1.959964 ** 2)))
    assert wilson(10, 10)[1] == pytest.approx(1.0)


def test_help_and_bad_input() -> None:
    run = [sys.executable, "-m", "coda_lsp.tools.context_bench"]
    assert "hit rate" in subprocess.run([*run, "--help"], capture_output=True, text=True, check=True).stdout
    missing = subprocess.run([*run, "/no/such/folder"], capture_output=True, text=True)
    assert missing.returncode != 0 and missing.stderr.strip() == \
        "coda-lsp context_bench: /no/such/folder is not a folder"
    nothing = subprocess.run(run, capture_output=True, text=True)
    assert nothing.returncode != 0 and nothing.stderr.strip() == \
        "coda-lsp context_bench: name a REPO folder or --held-out N"
