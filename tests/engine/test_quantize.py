"""int8 weights: the quantizer and Int8Linear against float64, loading a checkpoint in int8, `auto`'s choice."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from coda_engine import CheckpointError, Engine
from coda_engine import checkpoint, precision
from coda_engine.precision import candidate_formats, fastest_cpu_precision, resolve_precision
from coda_engine.quantize import (FINE_ROWS, Int8Linear, quantize_activations, quantize_rows,
                                  reference_int8_linear)

SHIPPED_MODEL = Path(__file__).resolve().parents[2] / "models" / "coda-tiny"
CODE = ("def mean(values):\n    total = 0\n    for value in values:\n        total += value\n"
        "    return total / len(values)\n")


def test_rows_quantize_to_their_own_scale_within_half_a_step() -> None:
    weight = torch.randn(48, 80) * torch.logspace(-3, 1, 48)[:, None]
    weight[7] = 0.0  # a row of zeros keeps a finite scale and quantizes to zeros
    quantized, scale = quantize_rows(weight)
    assert quantized.dtype == torch.int8 and int(quantized.abs().max()) == 127
    assert bool((quantized[7] == 0).all()) and bool(torch.isfinite(scale).all())
    error = (weight - quantized.float() * scale[:, None]).abs()
    assert bool((error <= scale[:, None] / 2 * (1 + 1e-5)).all())


@pytest.mark.parametrize("shape", [(1, 64), (5, 64), (2, 3, 64), (FINE_ROWS + 1, 64)])
def test_int8_linear_equals_its_float64_reference_and_approximates_the_float_product(shape) -> None:
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(96, 64, generator=generator) * 0.05
    x = torch.randn(*shape, generator=generator)
    layer = Int8Linear.from_float(weight)
    out = layer(x)
    assert out.shape == (*shape[:-1], 96) and out.dtype == torch.float32
    reference = reference_int8_linear(x, layer.weight_int8, layer.scale)
    torch.testing.assert_close(out.double(), reference, rtol=1e-5, atol=1e-5)
    exact = x.double() @ weight.double().t()
    assert float((out.double() - exact).norm() / exact.norm()) < 0.02


def test_activation_rows_quantize_to_their_own_scale_within_half_a_step() -> None:
    rows = torch.randn(6, 80) * torch.logspace(-4, 2, 6)[:, None]
    rows[2] = 0.0
    quantized, scale = quantize_activations(rows)
    assert quantized.dtype == torch.int8 and scale.shape == (6, 1) and bool(torch.isfinite(scale).all())
    assert bool((quantized[2] == 0).all())
    assert bool(((rows - quantized.float() * scale).abs() <= scale / 2 * (1 + 1e-5)).all())


def test_thin_products_quantize_activations_twice_and_come_out_closer_to_the_weights_product() -> None:
    generator = torch.Generator().manual_seed(1)
    layer = Int8Linear.from_float(torch.randn(96, 64, generator=generator) * 0.05)
    x = torch.randn(FINE_ROWS + 1, 64, generator=generator)
    # Against the int8 weights' own float product: what is left is the activations' rounding.
    weights_product = x.double() @ (layer.weight_int8.double() * layer.scale.double()[:, None]).t()

    def error(out: torch.Tensor, rows: slice) -> float:
        return float((out.double() - weights_product[rows]).norm() / weights_product[rows].norm())

    thin, wide = layer(x[:FINE_ROWS]), layer(x)
    assert error(thin, slice(FINE_ROWS)) < error(wide[:FINE_ROWS], slice(FINE_ROWS)) / 50


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


def test_auto_picks_among_what_the_flags_allow_by_timing(monkeypatch) -> None:
    assert candidate_formats(frozenset()) == ["float32"]
    assert candidate_formats(frozenset({"avx512_bf16"})) == ["float32", "bfloat16"]
    assert candidate_formats(frozenset({"avx512_vnni", "amx_bf16"})) == ["float32", "bfloat16", "int8"]
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512f"}))
    fastest_cpu_precision.cache_clear()
    try:
        only_fp32 = resolve_precision("auto", torch.device("cpu"))
        assert only_fp32.name == "float32" and only_fp32.reason.startswith(
            "auto on a CPU with neither native bf16 nor int8: float32 was fastest")
        monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_vnni"}))
        fastest_cpu_precision.cache_clear()
        chosen = resolve_precision("auto", torch.device("cpu"))
        assert chosen.name in ("float32", "int8") and "float32 " in chosen.reason and "int8 " in chosen.reason
    finally:
        fastest_cpu_precision.cache_clear()


def test_bf16_asked_for_where_it_is_emulated_warns_once(monkeypatch, caplog) -> None:
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_vnni"}))
    precision.warn_if_bf16_is_emulated.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="coda_engine"):
            assert resolve_precision("bf16", torch.device("cpu")).name == "bfloat16"
            resolve_precision("bf16", torch.device("cpu"))
        warnings = [record.getMessage() for record in caplog.records]
        assert len(warnings) == 1 and warnings[0].startswith("bf16 on a CPU without AMX or AVX512-BF16 is emulated")
    finally:
        precision.warn_if_bf16_is_emulated.cache_clear()
