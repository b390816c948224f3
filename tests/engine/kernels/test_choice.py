"""CODA_KERNELS and the probe: which path a device gets, and the fall-back when the kernels cannot run."""

from __future__ import annotations

import logging

import pytest

from coda_engine.kernels import choice, confidence
from coda_engine.kernels.choice import KERNELS_ENV, choose_kernels, kernel_mode

NO_COMPILER = "Failed to find C compiler. Please specify via CC environment variable or set triton.knobs.build.impl."


@pytest.fixture(autouse=True)
def fresh_choices():
    """Choices are kept per device and mode for the process; each test starts and leaves without any."""
    choice._choose.cache_clear()
    yield
    choice._choose.cache_clear()


def test_the_mode_comes_from_the_environment_and_is_checked(monkeypatch) -> None:
    monkeypatch.delenv(KERNELS_ENV, raising=False)
    assert kernel_mode() == "auto"
    monkeypatch.setenv(KERNELS_ENV, "torch")
    assert kernel_mode() == "torch" and kernel_mode("triton") == "triton"
    monkeypatch.setenv(KERNELS_ENV, "cuda")
    with pytest.raises(ValueError) as error:
        choose_kernels("cpu")
    assert str(error.value) == "CODA_KERNELS='cuda' is not a kernel mode; expected auto, triton or torch"


def test_auto_takes_torch_on_a_cpu_and_torch_takes_torch_everywhere() -> None:
    auto = choose_kernels("cpu", "auto")
    assert (auto.use_triton, auto.name, auto.reason) == (False, "torch",
                                                         "Triton kernels are compiled for CUDA only, not cpu")
    assert choose_kernels("cpu", "torch").reason == "CODA_KERNELS=torch"


def test_triton_under_the_interpreter_runs_the_probe_and_takes_the_kernels(triton_interpreter) -> None:
    forced = choose_kernels("cpu", "triton")
    assert forced.use_triton and forced.name == "triton"
    assert forced.reason == "a probe launch on cpu agreed with torch"


def test_triton_where_it_cannot_run_is_one_line_naming_the_alternative(monkeypatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError) as error:
        choose_kernels("cpu", "triton")
    message = str(error.value)
    assert "\n" not in message and message.startswith("Triton kernels asked for on cpu, where they cannot run: ")
    assert message.endswith("(CODA_KERNELS=auto or torch takes the torch path)")


def test_a_kernel_that_cannot_be_built_falls_back_to_torch_with_its_reason(triton_interpreter, monkeypatch,
                                                                           caplog) -> None:
    monkeypatch.setattr(choice, "runs_compiled", lambda device: True)  # auto wants the kernels here, as on CUDA
    assert choose_kernels("cpu", "auto").use_triton  # the real probe, interpreted, passes
    choice._choose.cache_clear()

    def no_compiler(kernel, do_not_specialize=()):
        raise RuntimeError(NO_COMPILER + "\nmore detail")

    monkeypatch.setattr(confidence, "compile_kernel", no_compiler)
    with caplog.at_level(logging.WARNING, logger="coda_engine.kernels"):
        fallen_back = choose_kernels("cpu", "auto")
        assert choose_kernels("cpu", "auto") == fallen_back  # probed once per device
    assert not fallen_back.use_triton
    assert fallen_back.reason == f"probe launch failed: RuntimeError: {NO_COMPILER}"
    assert [record.getMessage() for record in caplog.records] == [
        f"Triton kernels unavailable on cpu, using the torch path: {fallen_back.reason}"]
    with pytest.raises(ValueError, match="Failed to find C compiler"):
        choose_kernels("cpu", "triton")
