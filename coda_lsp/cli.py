"""The `coda-lsp` command: serve the language server (stdio or TCP), or `infill` one cursor of a file."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from coda_lsp import __version__

# The model shipped with the project; `--model` overrides it.
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "coda-tiny"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["infill"]:
        return _infill(_infill_parser().parse_args(argv[1:]))
    if argv[:1] == ["serve"]:
        argv = argv[1:]
    return _serve(_serve_parser().parse_args(argv))


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coda-lsp",
        description="Code completion language server backed by a CoDA diffusion model. "
                    "`coda-lsp infill --help` infills one cursor of a file instead.")
    parser.add_argument("--version", action="version", version=f"coda-lsp {__version__}")
    _add_model_arguments(parser, required=False)
    transport = parser.add_mutually_exclusive_group()
    transport.add_argument("--stdio", action="store_true", help="talk LSP over stdin/stdout (the default)")
    transport.add_argument("--tcp", metavar="HOST:PORT", help="listen for one LSP client on HOST:PORT")
    parser.add_argument("--log-file", type=Path, help="write logs here instead of stderr")
    parser.add_argument("--log-level", default="INFO", type=str.upper,
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default: INFO")
    return parser


def _infill_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coda-lsp infill",
        description="Infill at one cursor of FILE (prefix = the text before it, suffix = the text after it) "
                    "and print the infill on stdout and its timings on stderr.")
    _add_model_arguments(parser, required=True)
    parser.add_argument("file", type=Path, metavar="FILE")
    parser.add_argument("--line", type=int, required=True, help="cursor line, 1-based")
    parser.add_argument("--column", type=int, required=True, help="cursor column in characters, 1-based")
    parser.add_argument("--max-tokens", type=int, default=64, help="span length in tokens (default 64)")
    parser.add_argument("--steps", type=int,
                        help="denoising steps (default: the fast path's; one per token with --exact)")
    parser.add_argument("--alg", choices=["origin", "maskgit_plus", "topk_margin", "entropy", "threshold"],
                        help="reveal rule (default: threshold on the fast path, entropy with --exact)")
    parser.add_argument("--exact", action="store_true",
                        help="CoDA's reference loop (no cache, one token per step by default) instead of the fast path")
    return parser


def _add_model_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument("--model", required=required,
                        help="HF-format CoDA checkpoint folder, or a hub id such as Salesforce/CoDA-v0-Instruct "
                             "already in the local Hugging Face cache"
                             + ("" if required else f" (default: {DEFAULT_MODEL})"))
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA when present, else cpu), cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--dtype", choices=["auto", "fp32", "bf16", "fp16", "int8"], default="auto",
                        help="weights' format (default auto: bf16 on CUDA; on a CPU the fastest of fp32, native "
                             "bf16 and int8, measured at load); int8 quantizes every linear layer at load (CPU)")


def _serve(args: argparse.Namespace) -> int:
    from coda_lsp.model_path import ModelNotFound, resolve_model

    if args.model is None and not DEFAULT_MODEL.is_dir():
        print(f"coda-lsp: no model at {DEFAULT_MODEL}; pass --model PATH (an HF-format CoDA checkpoint folder)",
              file=sys.stderr)
        return 2
    try:
        model = DEFAULT_MODEL if args.model is None else resolve_model(args.model)
    except ModelNotFound as exc:
        print(f"coda-lsp: {exc}", file=sys.stderr)
        return 2
    _configure_logging(args.log_level, args.log_file)
    from coda_lsp.loader import ModelSpec
    from coda_lsp.server import build_server
    from coda_lsp.settings import Settings
    from coda_lsp.transport import Utf8RepairingStdin

    server = build_server(Settings(), ModelSpec(model, args.device, args.dtype))
    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        if not host or not port.isdigit():
            print(f"coda-lsp: --tcp expects HOST:PORT, got {args.tcp!r}", file=sys.stderr)
            return 2
        server.start_tcp(host, int(port))
        return 0
    stdout = sys.stdout.buffer
    # stdout carries the protocol: anything a library prints would corrupt it, so print() goes to stderr
    sys.stdout = sys.stderr
    server.start_io(stdin=Utf8RepairingStdin(sys.stdin.buffer), stdout=stdout)
    return 0


def _configure_logging(level: str, log_file: Path | None) -> None:
    handler: logging.Handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # pygls logs every message body at INFO; keep that for DEBUG
    logging.getLogger("pygls").setLevel(level if level == "DEBUG" else "WARNING")


def _infill(args: argparse.Namespace) -> int:
    from coda_engine import Engine
    from coda_lsp.model_path import resolve_model

    try:
        text = args.file.read_text(encoding="utf-8", errors="replace")
        offset = _offset(text, args.line, args.column)
        engine = Engine.from_pretrained(resolve_model(args.model), device=args.device, dtype=args.dtype)
        started = time.perf_counter()
        prefix, suffix = _prompt(engine, text, offset, args.max_tokens)
        result = engine.infill(prefix, suffix, max_new_tokens=args.max_tokens, steps=args.steps, alg=args.alg,
                               exact=args.exact)
    except Exception as exc:  # CheckpointError, OSError, ValueError: one line, non-zero exit
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"coda-lsp infill: error: {message}", file=sys.stderr)
        return 1
    total_ms = (time.perf_counter() - started) * 1000
    print(result.text)
    print(f"{len(result.token_ids)} tokens in {result.num_forward_passes} forward passes: engine "
          f"{result.elapsed_ms:.1f} ms, total {total_ms:.1f} ms; {engine.precision.name} weights "
          f"({engine.precision.reason})", file=sys.stderr)
    return 0


def _offset(text: str, line: int, column: int) -> int:
    """Offset of a 1-based line and column; ValueError names what is out of range."""
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        raise ValueError(f"--line {line} is outside the file (1..{len(lines)})")
    if not 1 <= column <= len(lines[line - 1].rstrip("\r")) + 1:
        raise ValueError(f"--column {column} is outside line {line} (1..{len(lines[line - 1].rstrip(chr(13))) + 1})")
    return sum(len(before) + 1 for before in lines[:line - 1]) + column - 1


def _prompt(engine: object, text: str, offset: int, span: int) -> tuple[str, str]:
    """Prefix and suffix around the cursor, cut at line boundaries to what the model's positions hold."""
    from coda_lsp.context import TokenCounter, build_context
    from coda_lsp.documents import Document
    from coda_lsp.settings import ContextSettings

    room = engine.config.max_position_embeddings - span - 16  # type: ignore[attr-defined]
    doc = Document("file:///infill", "", 0, text)
    ctx = build_context(doc, offset, ContextSettings(context_tokens=max(16, room)),
                        TokenCounter(engine.tokenizer))  # type: ignore[attr-defined]
    # the model predicts each position from the one before, so a span cannot open the canvas
    return ctx.prefix or "\n", ctx.suffix
