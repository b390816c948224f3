"""`auto`'s weight format: every format that runs is timed on the model's shapes, the flags only order them; an
explicit format slower than fp32 warns once with what was measured."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import pytest
import torch

from coda_engine import precision, timing
from coda_engine.config import load_config
from coda_engine.precision import PassShape, candidate_formats, fastest_cpu_precision, resolve_precision
from coda_engine.quantize import int8_unavailable_reason

SHIPPED_MODEL = Path(__file__).resolve().parents[2] / "models" / "coda-tiny"


@pytest.fixture
def measured(monkeypatch):
    """Set what each format's estimated pass measures (ms by name), with the cached choices cleared around."""
    def measure(timings: dict[str, float]) -> None:
        monkeypatch.setattr(precision, "estimated_pass_ms", lambda name, shape, to_beat_ms=math.inf: timings[name])

    fastest_cpu_precision.cache_clear()
    precision.warn_if_slower_than_fp32.cache_clear()
    yield measure
    fastest_cpu_precision.cache_clear()
    precision.warn_if_slower_than_fp32.cache_clear()


@pytest.fixture
def int8_runs(monkeypatch) -> None:
    """These tests are about the order and the warnings, not about this CPU's kernels: an int8 kernel runs."""
    monkeypatch.setattr(precision, "int8_unavailable_reason", lambda: None)


def test_every_format_that_runs_is_a_candidate_and_the_flags_only_order_them(monkeypatch, int8_runs) -> None:
    assert candidate_formats(frozenset()) == ["float32", "bfloat16", "int8"]
    assert candidate_formats(frozenset({"avx2", "fma"})) == ["float32", "bfloat16", "int8"]
    assert candidate_formats(frozenset({"avx512_bf16"})) == ["bfloat16", "float32", "int8"]
    assert candidate_formats(frozenset({"avx512_vnni"})) == ["int8", "float32", "bfloat16"]
    assert candidate_formats(frozenset({"avx_vnni", "amx_bf16"})) == ["int8", "bfloat16", "float32"]
    monkeypatch.setattr(precision, "int8_unavailable_reason", lambda: "no int8 kernel runs here")
    assert candidate_formats(frozenset({"avx512_vnni"})) == ["float32", "bfloat16"]


def test_auto_takes_the_fastest_measured_format_whatever_the_flags_say(monkeypatch, measured, caplog) -> None:
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "fma"}))  # no VNNI: int8 comes last
    measured({"float32": 900.0, "bfloat16": 2400.0, "int8": 500.0})
    with caplog.at_level(logging.INFO, logger="coda_engine"):
        chosen = resolve_precision("auto", torch.device("cpu"), load_config(SHIPPED_MODEL))
    assert chosen.name == "int8" and chosen.compute == torch.float32
    assert chosen.reason.startswith("auto on a CPU with avx2, fma: int8 was fastest for this model's shapes "
                                    "(estimated pass: float32 900 ms, bfloat16 2400 ms, int8 (")
    assert chosen.reason.endswith(") 500 ms)") and f"weights: {chosen.reason}" in caplog.messages


def test_a_tie_goes_to_the_format_the_flags_put_first(monkeypatch, measured) -> None:
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    measured({"float32": 700.0, "bfloat16": 700.0, "int8": 800.0})
    chosen = resolve_precision("auto", torch.device("cpu"))
    assert chosen.name == "bfloat16" and chosen.compute == torch.bfloat16
    assert chosen.reason.startswith("auto on a CPU with amx_bf16: bfloat16 was fastest")


def test_auto_times_every_format_on_the_model_s_own_shapes() -> None:
    fastest_cpu_precision.cache_clear()
    try:
        chosen = resolve_precision("auto", torch.device("cpu"), load_config(SHIPPED_MODEL))
    finally:
        fastest_cpu_precision.cache_clear()
    measured = chosen.reason.partition("(estimated pass: ")[2]
    names = ["float32", "bfloat16"] + ([] if int8_unavailable_reason() else ["int8"])
    assert chosen.name in names and all(f"{name} " in measured for name in names)
    assert measured.count(" ms") == len(names)


@pytest.mark.parametrize("name, asked", [("int8", "int8"), ("bfloat16", "bf16")])
def test_an_explicit_format_slower_than_fp32_runs_with_one_warning_naming_the_slowdown(measured, caplog, name,
                                                                                      asked, int8_runs) -> None:
    measured({"float32": 400.0, name: 1000.0})
    with caplog.at_level(logging.WARNING, logger="coda_engine"):
        assert resolve_precision(asked, torch.device("cpu")).name == name
        resolve_precision(asked, torch.device("cpu"))
    assert len(caplog.messages) == 1
    assert caplog.messages[0].startswith(f"--dtype {asked} is 2.5x slower than fp32 on this CPU: an estimated pass "
                                         f"took 1000 ms in {name}")
    assert caplog.messages[0].endswith("against 400 ms in fp32; --dtype auto picks the fastest format")


@pytest.mark.parametrize("asked", ["int8", "bf16"])
def test_an_explicit_format_faster_than_fp32_does_not_warn(measured, caplog, asked, int8_runs) -> None:
    measured({"float32": 400.0, "int8": 300.0, "bfloat16": 350.0})
    with caplog.at_level(logging.WARNING, logger="coda_engine"):
        resolve_precision(asked, torch.device("cpu"))
    assert caplog.messages == []


def test_a_pass_shape_is_the_model_s_or_coda_v0_s() -> None:
    assert PassShape.of(None) == PassShape(2048, 6144, 28, 151936)
    assert PassShape.of(load_config(SHIPPED_MODEL)) == PassShape(384, 1024, 4, 8192)


def test_a_kernel_that_has_clearly_lost_is_timed_twice(monkeypatch) -> None:
    calls = []

    def slow(_: torch.Tensor) -> None:
        calls.append(None)
        time.sleep(0.01)

    assert timing.fastest_ms(slow, torch.zeros(1), to_beat_ms=1.0) >= 10.0
    assert len(calls) == 3  # the untimed run and two timed ones
    calls.clear()
    timing.fastest_ms(slow, torch.zeros(1))
    assert len(calls) == 1 + timing.TIMING_REPEATS
