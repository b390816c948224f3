"""int8 weights: the quantizer, Int8Linear on each kernel against float64 (the AVX2 one included), loading a
checkpoint in int8. `auto`'s choice is in test_precision.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from coda_engine import CheckpointError, Engine
from coda_engine import checkpoint, quantize
from coda_engine.precision import resolve_precision
from coda_engine.quantize import (FINE_ROWS, KERNELS, Int8Linear, kernel_unavailable_reason, quantize_activations,
                                  quantize_rows, reference_int8_linear, runnable_kernels)
from coda_engine.tools.int8_bench import AVX2_EMULATION

SHIPPED_MODEL = Path(__file__).resolve().parents[2] / "models" / "coda-tiny"
CODE = ("def mean(values):\n    total = 0\n    for value in values:\n        total += value\n"
        "    return total / len(values)\n")
KERNEL_NAMES = [kernel.name for kernel in KERNELS]


def kernel_named(name: str) -> quantize.Int8Kernel:
    kernel = next(kernel for kernel in KERNELS if kernel.name == name)
    reason = kernel_unavailable_reason(kernel)
    if reason is not None:
        pytest.skip(reason)
    return kernel


def test_rows_quantize_to_their_own_scale_within_half_a_step() -> None:
    weight = torch.randn(48, 80) * torch.logspace(-3, 1, 48)[:, None]
    weight[7] = 0.0  # a row of zeros keeps a finite scale and quantizes to zeros
    quantized, scale = quantize_rows(weight)
    assert quantized.dtype == torch.int8 and int(quantized.abs().max()) == 127
    assert bool((quantized[7] == 0).all()) and bool(torch.isfinite(scale).all())
    error = (weight - quantized.float() * scale[:, None]).abs()
    assert bool((error <= scale[:, None] / 2 * (1 + 1e-5)).all())


@pytest.mark.parametrize("kernel_name", KERNEL_NAMES)
@pytest.mark.parametrize("shape", [(1, 64), (5, 64), (2, 3, 64), (FINE_ROWS + 1, 64)])
def test_int8_linear_equals_its_float64_reference_and_approximates_the_float_product(kernel_name, shape) -> None:
    kernel = kernel_named(kernel_name)
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(96, 64, generator=generator) * 0.05
    x = torch.randn(*shape, generator=generator)
    layer = Int8Linear.from_float(weight, kernel)
    out = layer(x)
    assert out.shape == (*shape[:-1], 96) and out.dtype == torch.float32
    reference = reference_int8_linear(x, layer.weight_int8, layer.scale, kernel.levels)
    torch.testing.assert_close(out.double(), reference, rtol=1e-5, atol=1e-5)
    exact = x.double() @ weight.double().t()
    assert float((out.double() - exact).norm() / exact.norm()) < 0.02


@pytest.mark.parametrize("kernel_name", KERNEL_NAMES)
def test_a_kernel_holds_the_weights_it_was_given(kernel_name) -> None:
    kernel = kernel_named(kernel_name)
    weight_int8, scale = quantize_rows(torch.randn(40, 24))
    layer = Int8Linear(weight_int8, scale, kernel)
    assert layer.kernel is kernel and torch.equal(layer.weight_int8, weight_int8) and torch.equal(layer.scale, scale)


@pytest.mark.parametrize("levels", [127, 63])
def test_activation_rows_quantize_to_their_own_scale_within_half_a_step(levels) -> None:
    rows = torch.randn(6, 80) * torch.logspace(-4, 2, 6)[:, None]
    rows[2] = 0.0
    codes, step = quantize_activations(rows, levels)
    assert step.shape == (6, 1) and bool(torch.isfinite(step).all()) and bool((codes == codes.round()).all())
    assert int(codes.abs().max()) == levels and bool((codes[2] == 0).all())
    assert bool(((rows - codes * step).abs() <= step / 2 * (1 + 1e-5)).all())


@pytest.mark.parametrize("kernel_name", KERNEL_NAMES)
def test_thin_products_quantize_activations_twice_and_come_out_closer_to_the_weights_product(kernel_name) -> None:
    kernel = kernel_named(kernel_name)
    generator = torch.Generator().manual_seed(1)
    layer = Int8Linear.from_float(torch.randn(96, 64, generator=generator) * 0.05, kernel)
    x = torch.randn(FINE_ROWS + 1, 64, generator=generator)
    # Against the int8 weights' own float product: what is left is the activations' rounding.
    weights_product = x.double() @ (layer.weight_int8.double() * layer.scale.double()[:, None]).t()

    def error(out: torch.Tensor, rows: slice) -> float:
        return float((out.double() - weights_product[rows]).norm() / weights_product[rows].norm())

    thin, wide = layer(x[:FINE_ROWS]), layer(x)
    assert error(thin, slice(FINE_ROWS)) < error(wide[:FINE_ROWS], slice(FINE_ROWS)) / 50


def test_a_kernel_that_saturates_or_fails_is_not_used() -> None:
    class Saturating:
        """Sums in int16 and clamps there, as u8 x s8 pair sums without VNNI do past 2^15."""

        name, levels = "saturating", 127

        def pack(self, weight_int8: torch.Tensor) -> torch.Tensor:
            return weight_int8

        def multiply(self, codes: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
            return (codes @ packed.float().t()).clamp(-2**15, 2**15 - 1)

    class Missing(Saturating):
        name = "missing"

        def multiply(self, codes: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("no kernel for this CPU\nsecond line")

    assert kernel_unavailable_reason(Saturating()) == "saturating gave a wrong product on this CPU"
    assert kernel_unavailable_reason(Missing()) == "missing does not run here (no kernel for this CPU)"


def test_each_layer_shape_gets_the_kernel_that_timed_fastest(monkeypatch, caplog) -> None:
    kernels = runnable_kernels()
    if len(kernels) < 2:
        pytest.skip("one int8 kernel runs here")
    slowest_first = {kernel: 10.0 * (len(kernels) - index) for index, kernel in enumerate(kernels)}
    monkeypatch.setattr(quantize, "window_ms", lambda kernel, *shape: slowest_first[kernel])
    monkeypatch.setattr(quantize, "LOST_KERNELS", set())
    quantize.timed_fastest_kernel.cache_clear()
    try:
        with caplog.at_level("INFO", logger="coda_engine"):
            assert Int8Linear.from_float(torch.randn(24, 16)).kernel is kernels[-1]
            assert quantize.fastest_kernel(16, 10**6) is kernels[-1]
        assert caplog.records[0].getMessage().startswith(f"int8 kernel for 16 -> 24 products: {kernels[-1].name} (")
    finally:
        quantize.timed_fastest_kernel.cache_clear()


def test_a_kernel_that_lost_by_far_on_one_shape_is_not_timed_on_the_next(monkeypatch) -> None:
    kernels = runnable_kernels()
    if len(kernels) < 2:
        pytest.skip("one int8 kernel runs here")
    timed = []

    def window_ms(kernel: quantize.Int8Kernel, *shape: object) -> float:
        timed.append(kernel)
        return 1.0 if kernel is kernels[0] else 100.0  # the others: a scalar fallback

    monkeypatch.setattr(quantize, "window_ms", window_ms)
    monkeypatch.setattr(quantize, "LOST_KERNELS", set())
    quantize.timed_fastest_kernel.cache_clear()
    try:
        assert quantize.fastest_kernel(16, 24) is kernels[0] and timed == list(kernels)
        timed.clear()
        assert quantize.fastest_kernel(24, 16) is kernels[0] and timed == []
    finally:
        quantize.timed_fastest_kernel.cache_clear()


AVX2_CHECK = """
import torch
from coda_engine.quantize import Int8Linear, reference_int8_linear, runnable_kernels
from coda_engine.tools.int8_bench import fbgemm_kernel_answering
print(fbgemm_kernel_answering())
assert "fbgemm" in [kernel.name for kernel in runnable_kernels()]
generator = torch.Generator().manual_seed(0)
weight = torch.randn(96, 2048, generator=generator) * 0.05
weight[:2] = 1.0  # channels at +127 everywhere: every pair sum at its largest
for kernel in runnable_kernels():  # _int_mm too where it is exact here
    for rows in (1, 57, 129):
        x = torch.randn(rows, 2048, generator=generator)
        x[0] = 3.0  # a row at its largest code everywhere
        layer = Int8Linear.from_float(weight, kernel)
        reference = reference_int8_linear(x, layer.weight_int8, layer.scale, kernel.levels)
        torch.testing.assert_close(layer(x).double(), reference, rtol=1e-5, atol=1e-5)
print("ok")
"""


def test_the_fbgemm_kernel_is_exact_on_its_avx2_code_too() -> None:
    if "fbgemm" not in torch.backends.quantized.supported_engines:
        pytest.skip("this torch has no fbgemm")
    # fbgemm picks its kernels from the CPU once per process: a fresh one, with its AVX2 kernels forced.
    completed = subprocess.run([sys.executable, "-c", AVX2_CHECK], capture_output=True, text=True, timeout=120,
                               env={**os.environ, **AVX2_EMULATION})
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.splitlines() == [
        "fbgemm answers with AVX2-class kernels (u8 x s8 pairs saturate in int16)", "ok"]


def test_a_checkpoint_loads_in_int8_a_chunk_at_a_time(tiny_checkpoint: Path, monkeypatch) -> None:
    monkeypatch.setattr(checkpoint, "CONVERT_CHUNK_BYTES", 4096)  # many chunks per tensor
    engine = Engine.from_pretrained(tiny_checkpoint, dtype="int8")
    assert engine.precision.name == "int8" and engine.dtype == torch.float32
    assert not [name for name, module in engine.model.named_modules() if isinstance(module, torch.nn.Linear)]
    float_engine = Engine.from_pretrained(tiny_checkpoint)
    for name, module in engine.model.named_modules():
        if isinstance(module, Int8Linear):
            expected_weight, expected_scale = quantize_rows(float_engine.model.get_submodule(name).weight)
            assert torch.equal(module.weight_int8, expected_weight) and torch.equal(module.scale, expected_scale)
    assert isinstance(engine.model.lm_head, Int8Linear)
    assert engine.infill("def f(x):\n    return ", "\n", max_new_tokens=8).token_ids


def test_int8_logits_agree_with_fp32_on_the_shipped_model() -> None:
    fp32, int8 = Engine.from_pretrained(SHIPPED_MODEL), Engine.from_pretrained(SHIPPED_MODEL, dtype="int8")
    ids = torch.tensor([fp32.tokenizer.encode(CODE)])
    reference, quantized = fp32.forward_logits(ids)[0], int8.forward_logits(ids)[0]
    agreement = float((reference.argmax(-1) == quantized.argmax(-1)).float().mean())
    divergence = torch.nn.functional.kl_div(quantized.log_softmax(-1), reference.log_softmax(-1),
                                            log_target=True, reduction="batchmean")
    assert agreement >= 0.9 and float(divergence) < 0.05, (agreement, float(divergence))


def test_quantized_checkpoints_are_refused_in_one_line(tiny_checkpoint: Path, tmp_path: Path) -> None:
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    gptq = tmp_path / "gptq"
    gptq.mkdir()
    for source in tiny_checkpoint.iterdir():
        (gptq / source.name).write_bytes(source.read_bytes())
    (gptq / "config.json").write_text(json.dumps({**config, "quantization_config": {"quant_method": "gptq"}}))
    with pytest.raises(CheckpointError, match=r"a quantized checkpoint \(gptq\), which coda-lsp does not read"):
        Engine.from_pretrained(gptq)
    int8_tensors = tmp_path / "int8"
    int8_tensors.mkdir()
    for source in tiny_checkpoint.iterdir():
        if source.suffix != ".safetensors":
            (int8_tensors / source.name).write_bytes(source.read_bytes())
    state = checkpoint.MappedFiles()
    entries = checkpoint.index_checkpoint(tiny_checkpoint)
    tensors = {name: state.tensor(entry).clone() for name, entry in entries.items()}
    tensors["lm_head.weight"] = tensors["lm_head.weight"].to(torch.int8)
    save_file(tensors, str(int8_tensors / "model.safetensors"))
    with pytest.raises(CheckpointError) as error:
        Engine.from_pretrained(int8_tensors)
    assert "\n" not in str(error.value) and "tensor lm_head.weight is int8: a quantized checkpoint" in str(error.value)


def test_int8_where_it_cannot_run_and_unknown_formats_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match=r"^int8 weights run on the CPU only, not cuda: use --dtype bf16 there$"):
        resolve_precision("int8", torch.device("cuda"))
    with pytest.raises(ValueError, match=r"^unknown dtype 'fp8'; expected one of auto, fp32, bf16, fp16, int8$"):
        resolve_precision("fp8", torch.device("cpu"))
    assert resolve_precision(None, torch.device("cpu")).name == "float32"
    assert resolve_precision("auto", torch.device("cuda")).name == "bfloat16"


def test_the_int8_bench_table_gives_each_candidate_beside_fp32_from_the_same_rounds() -> None:
    from coda_engine.tools.int8_bench import format_table

    table = format_table(["fp32", "int8 fbgemm", "int8pack"],
                         [("down 6144->2048, 57 rows", {"fp32": 20.0, "int8 fbgemm": 8.0}),
                          ("window pass", {"fp32": 2000.0, "int8 fbgemm": 1000.0, "int8pack": 4000.0})])
    assert table.splitlines() == ["| product, rows | fp32 | int8 fbgemm | int8pack |", "|---|---:|---:|---:|",
                                  "| down 6144->2048, 57 rows | 20.00 | 8.00 (2.50x) | - |",
                                  "| window pass | 2000.00 | 1000.00 (2.00x) | 4000.00 (0.50x) |"]


def test_the_int8_bench_refuses_thread_cpu_time_over_several_threads(capsys) -> None:
    from coda_engine.tools.int8_bench import main

    assert main(["--clock", "thread", "--threads", "2"]) == 2
    assert capsys.readouterr().err == ("coda_engine.tools.int8_bench: --clock thread needs --threads 1 (other threads' "
                                       "work is not counted)\n")
