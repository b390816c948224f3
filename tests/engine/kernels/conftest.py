"""Kernel tests run every Triton kernel in triton's interpreter, on CPU tensors.

Triton reads TRITON_INTERPRET once, when it is imported, so this conftest imports it with the variable set
(unless something imported it first) and then restores the variable: the rest of the suite sees no CPU Triton
path (`triton_available(cpu)` stays False there), while each test here sets the variable again.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

HAS_TRITON = importlib.util.find_spec("triton") is not None

if HAS_TRITON and "triton" not in sys.modules:
    _previous = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    import triton.language  # noqa: F401  (fixes interpreter mode for this process)

    if _previous is None:
        del os.environ["TRITON_INTERPRET"]
    else:
        os.environ["TRITON_INTERPRET"] = _previous


@pytest.fixture
def triton_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip without triton; otherwise run the test with the interpreter on (kernel modules use it for all tests)."""
    if not HAS_TRITON:
        pytest.skip("triton is not installed (it comes with the test extra: pip install -e '.[test]')")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    from coda_engine.kernels.runtime import interpreter_active

    if not interpreter_active():
        pytest.fail("triton was imported before TRITON_INTERPRET=1 was set; run these tests in their own "
                    "process: TRITON_INTERPRET=1 python -m pytest tests/engine/kernels")
