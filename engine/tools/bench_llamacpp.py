"""The CPU suite's llama.cpp row: the same weights as a Q8_0 GGUF, the same workload, through llama-cpp-python.

Optional: it runs only where `llama_cpp` imports (llama-cpp-python builds from source, about 20 minutes on 2
cores) and a GGUF of the benchmarked checkpoint exists. llama-cpp-python's sdist carries the converter
(`vendor/llama.cpp/convert_hf_to_gguf.py`, `gguf-py` beside it; it needs transformers and sentencepiece); `to_gguf`
runs it on a copy of the checkpoint's folder whose config names Qwen3ForCausalLM, the architecture CoDA's weights
have (the converter does not know CoDA's own name).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy


def to_gguf(checkpoint: Path, converter: Path, out: Path) -> Path:
    """`checkpoint` as a Q8_0 GGUF at `out`, by llama.cpp's converter; raises RuntimeError with its last line."""
    staged = out.parent / f"{out.stem}-hf"
    staged.mkdir(parents=True, exist_ok=True)
    for item in checkpoint.iterdir():
        target = staged / item.name
        if item.name != "config.json" and not target.exists():
            target.symlink_to(item.resolve())
    config = json.loads((checkpoint / "config.json").read_text())
    config.update(architectures=["Qwen3ForCausalLM"], model_type="qwen3")
    (staged / "config.json").write_text(json.dumps(config, indent=2))
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(converter.parent / "gguf-py"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(converter), str(staged), "--outtype", "q8_0", "--outfile", str(out)],
                          capture_output=True, text=True, env=environment)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise RuntimeError(f"convert_hf_to_gguf failed: {lines[-1] if lines else done.returncode}")
    return out


def llama_cpp_rows(gguf: Path, prefix_ids: list[int], suffix_ids: list[int], threads: int, span: int,
                   keystrokes: int, extra_buffers: bool = True) -> tuple[float, float]:
    """(cold ms, median typing ms over `keystrokes`) of llama.cpp on `gguf` writing `span` greedy tokens with
    `threads` CPU threads, as an AR infill server does (bench_cpu's AR rows): cold, the whole prompt (prefix then
    suffix) is evaluated; typing keeps it up to the end of the prefix and evaluates the suffix again.
    `extra_buffers` False: the weights as stored, without llama.cpp's repacked or AMX copies (those crash
    llama-cpp-python 0.3.36 in its first decode on an AMX Xeon)."""
    import llama_cpp
    from llama_cpp import Llama

    prompt = prefix_ids + suffix_ids
    default_params = llama_cpp.llama_model_default_params
    if not extra_buffers:
        # Llama() takes no such argument; it starts from these defaults, so they are what can be changed.
        def without_extra_buffers() -> llama_cpp.llama_model_params:
            params = default_params()
            params.use_extra_bufts = False
            return params

        llama_cpp.llama_cpp.llama_model_default_params = without_extra_buffers
    try:
        # A context a whole multiple of 256 tokens: llama.cpp rounds a smaller one down.
        llm = Llama(model_path=str(gguf), n_ctx=-(-(len(prompt) + span) // 256) * 256, n_batch=len(prompt),
                    n_threads=threads, n_threads_batch=threads, verbose=False)
    finally:
        llama_cpp.llama_cpp.llama_model_default_params = default_params

    def write(keep: int) -> float:
        """Keep the cache's first `keep` tokens, evaluate the rest of the prompt, write `span` tokens."""
        llm.n_tokens = keep
        started = time.perf_counter()
        llm.eval(prompt[keep:])
        for _ in range(span):
            # Greedy over the last position's logits (llama-cpp-python keeps no copy of them unless every
            # position's are asked for); random weights never end, so no end-of-text check.
            token = int(numpy.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).argmax())
            llm.eval([token])
        return (time.perf_counter() - started) * 1000

    write(0)  # set-up: thread pool, buffers
    cold_ms = write(0)
    typing_ms = [write(len(prefix_ids)) for _ in range(keystrokes)]
    return cold_ms, statistics.median(typing_ms)


def llama_cpp_available() -> str | None:
    """None when llama_cpp imports, else why not (one line)."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError as exc:
        return f"llama_cpp is not importable ({exc}); pip install llama-cpp-python builds it (about 20 min)"
    return None
