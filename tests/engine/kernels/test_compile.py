"""Every kernel variant compiles for H100/H200 (sm_90) with triton's own ptxas, on a machine without a GPU.

The interpreter checks what the kernels compute; this checks that the compiled path builds at all and keeps the
properties the design relies on (16-byte cp.async tiles, one-instruction exp and log). It runs in a child
process because this one imported triton in interpreter mode, where kernels cannot be compiled.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

COMPILE_ALL = r"""
import json, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from coda_engine.kernels import confidence, reveal

SM90 = GPUTarget("cuda", 90, 32)


def compile_ptx(kernel, types, constants, options):
    jitted = triton.jit(kernel)
    signature = {name: ("constexpr" if name in constants else types.get(name, "i32")) for name in jitted.arg_names}
    # What triton's launcher would see for torch tensors and V = 151936: 16-byte aligned pointers, strides and
    # sizes divisible by 16.
    aligned = {(index,): [["tt.divisibility", 16]] for index, name in enumerate(jitted.arg_names)
               if name not in constants and (types.get(name, "i32").startswith("*") or types.get(name) is None)}
    source = ASTSource(jitted, signature, constants, aligned)
    return triton.compile(source, target=SM90, options=options).asm["ptx"]


floats = {"inv_temperature": "fp32", "threshold": "fp32"}
results = {}
# Greedy in every dtype (the launcher's block sizes and options), sampling with the offset read from memory.
for dtype, block_v, sample in [("bf16", 4096, False), ("fp16", 4096, False), ("fp32", 2048, False),
                               ("bf16", 4096, True)]:
    types = {**floats, "logits_ptr": "*" + dtype, "stats_ptr": "*fp32", "cols_ptr": "*i32", "offset_ptr": "*i64",
             "seed": "i64", "offset": "i64"}
    constants = {"SAMPLE": sample, "OFFSET_IN_MEMORY": sample, "FAST_MATH": True, "BLOCK_V": block_v,
                 "PIPELINE_STAGES": confidence.PIPELINE_STAGES}
    options = {"num_warps": confidence.NUM_WARPS}
    if not sample:
        options["maxnreg"] = confidence.GREEDY_MAX_REGISTERS
    ptx = compile_ptx(confidence._confidence_partials_kernel, types, constants, options)
    properties = {"cp_async_16": "cp.async.cg.shared.global" in ptx, "ftz_exp": "ex2.approx.ftz.f32" in ptx}
    if sample:
        properties["ftz_log"] = "lg2.approx.ftz.f32" in ptx
        # -log(U) is floored at 1 - U, never at a constant such as 1e-30 (0f0DA24260), which made G ~ +69.
        properties["no_constant_floor"] = "0F0DA24260" not in ptx.upper()
    results[f"partials {dtype} sample={sample}"] = properties
for sample in (False, True):
    types = {**floats, "stats_ptr": "*fp32", "cols_ptr": "*i32", "logits_ptr": "*bf16", "token_ptr": "*i64",
             "max_prob_ptr": "*fp32", "margin_ptr": "*fp32", "neg_entropy_ptr": "*fp32"}
    compile_ptx(confidence._confidence_merge_kernel, types,
                {"SAMPLE": sample, "BLOCK_ROWS": confidence.MERGE_BLOCK_ROWS, "BLOCK_SPLITS": 8}, {"num_warps": 4})
    results[f"merge sample={sample}"] = {}
for use_threshold, block_l in [(True, 1024), (False, 8192)]:
    types = {**floats, "canvas_ptr": "*i64", "proposal_ptr": "*i64", "confidence_ptr": "*fp32", "quota_ptr": "*i32",
             "done_ptr": "*i1", "mask_token_id": "i32", "confident_ptr": "*i1"}
    constants = {"USE_THRESHOLD": use_threshold, "USE_CONFIDENT": not use_threshold, "BLOCK_L": block_l,
                 "CHUNK": reveal.compare_chunk(block_l)}
    compile_ptx(reveal._reveal_kernel, types, constants, {"num_warps": reveal.NUM_WARPS})
    results[f"reveal threshold={use_threshold} L={block_l}"] = {}
from coda_engine.kernels.runtime import compile_kernel
for kernel, arguments, names in [
        (confidence._confidence_partials_kernel, confidence.PARTIALS_UNSPECIALIZED, ["seed", "offset"]),
        (reveal._reveal_kernel, reveal.REVEAL_UNSPECIALIZED, ["canvas_row_stride"])]:
    launcher = compile_kernel(kernel, arguments)
    unspecialized = [param.name for param in launcher.params if param.do_not_specialize]
    results[f"{kernel.__name__} unspecialized"] = {"names": unspecialized == names}
print(json.dumps(results))
"""


def test_every_kernel_compiles_for_sm90() -> None:
    pytest.importorskip("triton", reason="triton is not installed (it comes with the test extra)")
    result = subprocess.run([sys.executable, "-c", COMPILE_ALL], capture_output=True, text=True, timeout=240,
                            env={**os.environ, "TRITON_INTERPRET": "0", "TRITON_DEFAULT_FP_FUSION": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.splitlines()[-1])
    assert len(results) == 10
    for name, properties in results.items():
        assert all(properties.values()), (name, properties)
