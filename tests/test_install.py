"""The language server's install (`pip install .`): every package of the source goes into it, its code runs
without any extra's packages, and torch's warning about the numpy it leaves out stays off stderr."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# In the extras or the test environment only, never imported by the language server or the engine it runs.
NOT_IN_THE_SERVER_INSTALL = ("numpy", "triton", "jax", "flax", "ray", "transformers", "fastapi", "uvicorn",
                             "prometheus_client", "openai", "pytest", "tree_sitter_language_pack")


def test_the_language_server_runs_without_the_extras(tiny_checkpoint: Path, tmp_path: Path) -> None:
    source = tmp_path / "a.py"
    source.write_text("x = \n")
    script = f"""
import sys
for name in {NOT_IN_THE_SERVER_INSTALL!r}:
    sys.modules[name] = None  # as if not installed: importing it raises ImportError
from coda_lsp.cli import main
from coda_lsp.server import build_server
from coda_lsp.syntax import check_grammars

check_grammars()
sys.exit(main(["infill", "--model", {str(tiny_checkpoint)!r}, {str(source)!r}, "--line", "1", "--column", "5",
               "--max-tokens", "4", "--steps", "2", "--device", "cpu"]))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and " forward passes" in result.stderr, result.stderr


def test_every_source_package_is_in_the_distribution() -> None:
    # pyproject lists packages by hand (its folders have other names than their imports); an editable install
    # imports an unlisted one anyway, a wheel or `pip install .` leaves it out
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    found = set()
    for name, folder in setuptools["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            found.add(".".join((name, *relative.parts)))
    assert found <= set(setuptools["packages"]), sorted(found - set(setuptools["packages"]))
