"""The `coda-lsp` command: serve the language server (stdio or TCP), `serve` the HTTP infill server, or `infill`
one cursor of a file."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import ipaddress
import logging
import math
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coda_lsp import __version__

if TYPE_CHECKING:
    from coda_engine.jobs import InfillJob
    from coda_engine.params import EngineOptions
    from coda_lsp.backend import Backend
    from coda_lsp.loader import ModelSpec
    from coda_lsp.serve.app import BackendFactory

# The model shipped with the project; `--model` overrides it.
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "coda-tiny"
# coda-lsp is on no package index: its extras install from the clone.
SERVE_INSTALL = "pip install '.[serve]' in coda-lsp's clone"
CLUSTER_INSTALL = "pip install '.[cluster]' in coda-lsp's clone"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["infill"]:
        return _infill(_infill_parser().parse_args(argv[1:]))
    if argv[:1] == ["serve"]:
        return _serve_http(_http_parser().parse_args(argv[1:]))
    return _serve(_serve_parser().parse_args(argv))


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coda-lsp",
        description="Code completion language server backed by a CoDA diffusion model. "
                    "`coda-lsp serve --help`: the HTTP server for a team instead (llama-server's /infill, OpenAI's "
                    "/v1/completions); `coda-lsp infill --help` infills one cursor of a file.")
    parser.add_argument("--version", action="version", version=f"coda-lsp {__version__}")
    _add_model_arguments(parser, required=False)
    transport = parser.add_mutually_exclusive_group()
    transport.add_argument("--stdio", action="store_true", help="talk LSP over stdin/stdout (the default)")
    transport.add_argument("--tcp", metavar="HOST:PORT", help="listen for one LSP client on HOST:PORT")
    parser.add_argument("--remote", metavar="URL",
                        help="load no model: send each infill to the `coda-lsp serve` at URL (e.g. "
                             "http://gpu-box:8012); everything else stays in this process")
    parser.add_argument("--api-key-file", type=_user_path, metavar="FILE",
                        help="with --remote: the server's API key, this file's first line")
    parser.add_argument("--log-file", type=_user_path, help="write logs here instead of stderr")
    parser.add_argument("--log-level", default="INFO", type=str.upper,
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default: INFO")
    return parser


def _http_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coda-lsp serve",
        description="HTTP infill server: llama-server's POST /infill (llama.vim, llama.vscode), OpenAI's POST "
                    "/v1/completions (Tabby, Continue, the openai package), GET /health, /v1/models, /props, "
                    "/metrics. Requests from every client are decoded together in one batch. Needs the `serve` "
                    f"extra: {SERVE_INSTALL}.")
    _add_model_arguments(parser, required=True)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1); any other than loopback needs an API key")
    parser.add_argument("--port", type=_port, default=8012, help="default 8012, llama.vim's and llama.vscode's")
    parser.add_argument("--api-key-file", type=_user_path, metavar="FILE",
                        help="clients must send `Authorization: Bearer KEY`, KEY being this file's first line")
    parser.add_argument("--insecure-no-auth", action="store_true",
                        help="listen on a non-loopback --host without an API key (anyone who reaches it can use it)")
    parser.add_argument("--max-tokens", type=_positive, default=64,
                        help="span of a request that names none (n_predict -1), and the cap of every span (default 64)")
    parser.add_argument("--max-rows", type=_positive, default=16,
                        help="rows decoded together in one batched pass (default 16); each completion is a row")
    parser.add_argument("--max-queue", type=_positive, default=64,
                        help="requests waiting for a place in the batch; past it requests get 503 (default 64)")
    parser.add_argument("--cache-mb", type=_positive, default=512,
                        help="memory for the clients' cached canvases, in MiB (default 512)")
    parser.add_argument("--max-body-kb", type=_positive, default=1024,
                        help="largest request body, in KiB (default 1024); larger ones get 413")
    parser.add_argument("--log-level", default="INFO", type=str.upper,
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default: INFO (one line per request)")
    cluster = parser.add_argument_group(f"scale-out on Ray Serve (the `cluster` extra: {CLUSTER_INSTALL}; see "
                                        "docs/cluster.md)")
    cluster.add_argument("--ray", action="store_true",
                         help="decode on Ray Serve replicas, each with its own batch and client cache, behind this "
                              "server: a local Ray instance, or the cluster at RAY_ADDRESS (`ray start --head`)")
    scale = cluster.add_mutually_exclusive_group()
    scale.add_argument("--replicas", type=_positive, metavar="N", help="engine replicas (default 1)")
    scale.add_argument("--autoscale", type=_autoscale, metavar="MIN:MAX",
                       help="between MIN and MAX replicas, scaled on the requests in flight")
    cluster.add_argument("--gpus-per-replica", type=_share, metavar="G",
                         help="GPUs each replica reserves, 0.5 to share one between two (default 0: CPU)")
    cluster.add_argument("--cpus-per-replica", type=_share, metavar="C",
                         help="CPU cores each replica reserves, its torch threads (default 1)")
    return parser


def _user_path(text: str) -> Path:
    """A path argument with `~` expanded: editors start the server with arguments no shell has expanded."""
    return Path(text).expanduser()


def _autoscale(text: str) -> tuple[int, int]:
    low, sep, high = text.partition(":")
    if not sep or not low.isdigit() or not high.isdigit() or not 1 <= int(low) <= int(high):
        raise argparse.ArgumentTypeError(f"expected MIN:MAX replicas with 1 <= MIN <= MAX, got {text!r}")
    return int(low), int(high)


def _bounded(name: str, convert: Callable[[str], Any], low: float, high: float,
             wanted: str) -> Callable[[str], Any]:
    """An argparse type: `convert(text)` within [low, high], else `must be {wanted}, got {text}`."""
    def check(text: str) -> Any:
        value = convert(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text}")
        return value
    check.__name__ = name  # argparse names it in "invalid NAME value"
    return check


_share = _bounded("_share", float, 0, math.inf, "a number >= 0")
_positive = _bounded("_positive", int, 1, math.inf, "at least 1")
_port = _bounded("_port", int, 0, 65535, "a port number (0-65535)")


def _infill_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coda-lsp infill",
        description="Infill at one cursor of FILE (prefix = the text before it, suffix = the text after it) "
                    "and print the infill on stdout and its timings on stderr.")
    _add_model_arguments(parser, required=True)
    parser.add_argument("file", type=_user_path, metavar="FILE")
    parser.add_argument("--line", type=int, required=True, help="cursor line, 1-based")
    parser.add_argument("--column", type=int, required=True, help="cursor column in characters, 1-based")
    parser.add_argument("--max-tokens", type=int, default=64, help="span length in tokens (default 64)")
    parser.add_argument("--steps", type=int,
                        help="denoising steps (default: the fast path's; one per token with --exact)")
    parser.add_argument("--alg", choices=["origin", "maskgit_plus", "topk_margin", "entropy", "threshold"],
                        help="reveal order (default entropy); the fast path also reveals, each pass, every "
                             "position at least 0.9 sure")
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
                        help="weights' format (default auto: bf16 on CUDA; on a CPU the fastest of fp32, bf16 and "
                             "int8, measured at load); int8 quantizes every linear layer at load (CPU)")


def _refuse(prog: str, reason: object, code: int = 2) -> int:
    print(f"{prog}: {reason}", file=sys.stderr)
    return code


def _serve(args: argparse.Namespace) -> int:
    from coda_lsp.syntax import GrammarMissing, check_grammars

    try:
        spec = _lsp_spec(args)
        check_grammars()
        host, _, port = args.tcp.rpartition(":") if args.tcp else ("", "", "")
        if args.tcp and (not host or not port.isdigit()):
            raise ValueError(f"--tcp expects HOST:PORT, got {args.tcp!r}")
    except (ValueError, GrammarMissing) as exc:
        return _refuse("coda-lsp", exc)
    _configure_logging(args.log_level, args.log_file)
    from coda_lsp.server import build_server
    from coda_lsp.settings import Settings
    from coda_lsp.protocol import Utf8RepairingStdin

    server = build_server(Settings(), spec)
    if args.tcp:
        server.start_tcp(host, int(port))
        return 0
    stdout = sys.stdout.buffer
    # stdout carries the protocol: anything a library prints would corrupt it, so print() goes to stderr
    sys.stdout = sys.stderr
    server.start_io(stdin=Utf8RepairingStdin(sys.stdin.buffer), stdout=stdout)
    return 0


def _lsp_spec(args: argparse.Namespace) -> ModelSpec:
    """The model to load, or --remote's server; ValueError with one line for no model, a URL that is no
    http(s) URL, --model beside it, or a key file without --remote or that cannot be read."""
    from urllib.parse import urlsplit

    from coda_lsp.loader import ModelSpec
    from coda_lsp.model_path import resolve_model

    if args.remote is None and args.api_key_file is None:
        if args.model is None and not DEFAULT_MODEL.is_dir():
            raise ValueError(f"no model at {DEFAULT_MODEL}; pass --model PATH (an HF-format CoDA checkpoint folder)")
        return ModelSpec(DEFAULT_MODEL if args.model is None else resolve_model(args.model), args.device, args.dtype)
    if args.remote is None:
        raise ValueError("--api-key-file goes with --remote URL (`coda-lsp serve` takes its own)")
    if args.model is not None:
        raise ValueError("--remote and --model: the model is the server's; pass one of them")
    url = urlsplit(args.remote)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise ValueError(f"--remote expects an http:// or https:// URL such as http://gpu-box:8012, got "
                         f"{args.remote!r}")
    key = _read_key(args.api_key_file) if args.api_key_file else None
    return ModelSpec(Path(), remote=args.remote.rstrip("/"), api_key=key)


# What `coda-lsp serve` imports beyond the language server's dependencies (the `serve` extra).
SERVE_PACKAGES = ("fastapi", "uvicorn", "prometheus_client")


def _serve_http(args: argparse.Namespace) -> int:
    """Check what can be checked before listening (the extra, the key, the address, the model's folder, the
    device), each failure one line and exit 2 (1 for a bad checkpoint); then listen while the model loads in the
    background."""
    missing = [name for name in SERVE_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        return _refuse("coda-lsp serve", f"the serve extra is not installed (missing {', '.join(missing)}): "
                                         f"{SERVE_INSTALL}")
    from coda_engine import CheckpointError
    from coda_engine.config import load_config
    from coda_lsp.model_path import resolve_model

    try:
        api_key = _read_key(args.api_key_file) if args.api_key_file else None
        if api_key is None and not args.insecure_no_auth and not _is_loopback(args.host):
            raise ValueError(f"--host {args.host} is reachable from other machines; pass --api-key-file FILE "
                             "(or --insecure-no-auth to serve anyone who can reach it)")
        model = resolve_model(args.model)
        if not model.is_dir():
            raise CheckpointError(model, "model folder not found" if not model.exists() else "not a folder")
        load_config(model)  # the weights load after startup; a wrong folder should not get that far
        load_backend = _ray_backend(args, model) if args.ray else _local_backend(args, model)
    except ValueError as exc:
        return _refuse("coda-lsp serve", exc)
    except CheckpointError as exc:
        return _refuse("coda-lsp serve", f"error: {exc}", code=1)
    _configure_logging(args.log_level, None)
    from coda_lsp.serve.app import create_app, run
    from coda_lsp.serve.settings import ServeSettings

    settings = ServeSettings(model_path=model, api_key=api_key, max_tokens=args.max_tokens,
                             max_body_bytes=args.max_body_kb * 1024)
    return run(create_app(load_backend, settings), args.host, args.port, args.log_level)


def _engine_options(args: argparse.Namespace) -> EngineOptions:
    """Each engine's options from `coda-lsp serve`'s flags (warm_span: a warm-up, n_predict 0, computes the
    canvas of a default-span completion)."""
    from coda_engine.params import EngineOptions

    return EngineOptions(device=args.device, dtype=args.dtype, max_rows=args.max_rows, max_queue=args.max_queue,
                         cache_mb=args.cache_mb, warm_span=args.max_tokens)


def _local_backend(args: argparse.Namespace, model: Path) -> BackendFactory:
    from coda_engine.engine import resolve_device
    from coda_lsp.backends.local import LocalBackend

    resolve_device(args.device)  # with --ray each replica resolves it (this machine may have no GPU)
    if args.replicas or args.autoscale or args.gpus_per_replica is not None or args.cpus_per_replica is not None:
        raise ValueError("--replicas, --autoscale, --gpus-per-replica and --cpus-per-replica go with --ray")
    return partial(LocalBackend.load, model, _engine_options(args))


def _ray_backend(args: argparse.Namespace, model: Path) -> BackendFactory:
    """RayBackend's factory, Ray started or joined; ValueError with one line when Ray Serve is not installed, Ray
    cannot be joined, or the GPUs asked for do not fit the device."""
    if args.gpus_per_replica and args.device == "cpu":
        raise ValueError("--gpus-per-replica with --device cpu: the replicas would hold GPUs they never use")
    if args.device.startswith("cuda") and not args.gpus_per_replica:
        raise ValueError(f"--device {args.device} needs --gpus-per-replica: Ray hides the GPUs from replicas "
                         "that reserve none")
    if importlib.util.find_spec("ray") is None:
        raise ValueError(f"--ray needs Ray Serve, the cluster extra: {CLUSTER_INSTALL}")
    try:
        from coda_lsp.backends.ray import ClusterOptions, backend_factory
    except ImportError as exc:  # ray without its serve extra
        raise ValueError(f"--ray needs Ray Serve, the cluster extra: {CLUSTER_INSTALL} ({exc})") from None
    options = ClusterOptions(replicas=args.replicas or 1, autoscale=args.autoscale,
                             gpus_per_replica=args.gpus_per_replica or 0.0,
                             cpus_per_replica=1.0 if args.cpus_per_replica is None else args.cpus_per_replica,
                             engine=_engine_options(args))
    return backend_factory(model, options)


def _read_key(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read --api-key-file {path}: {exc.__class__.__name__}: {exc}") from None
    key = lines[0].strip() if lines else ""
    if not key:
        raise ValueError(f"--api-key-file {path}: the first line (the key) is empty")
    return key


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def _configure_logging(level: str, log_file: Path | None) -> None:
    handler: logging.Handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # pygls logs every message body at INFO; keep that for DEBUG
    logging.getLogger("pygls").setLevel(level if level == "DEBUG" else "WARNING")


def _infill(args: argparse.Namespace) -> int:
    """One job through the local backend's scheduler, as the servers run theirs."""
    from coda_engine.errors import one_line
    from coda_engine.params import EngineOptions
    from coda_lsp.backends.local import LocalBackend
    from coda_lsp.model_path import resolve_model

    backend = None
    try:
        text = args.file.read_text(encoding="utf-8", errors="replace")
        offset = _offset(text, args.line, args.column)
        backend = LocalBackend.load(resolve_model(args.model), EngineOptions(device=args.device, dtype=args.dtype),
                                    spans=(args.max_tokens,))
        started = time.perf_counter()
        outcome = asyncio.run(backend.infill(_infill_job(backend, text, offset, args)))
    except Exception as exc:  # CheckpointError, OSError, ValueError: one line, non-zero exit
        print(f"coda-lsp infill: error: {one_line(exc)}", file=sys.stderr)
        return 1
    finally:
        if backend is not None:
            backend.close()
    total_ms = (time.perf_counter() - started) * 1000
    described = backend.describe()
    print(outcome.texts[0])
    print(f"{outcome.tokens_predicted[0]} tokens of text in {outcome.passes} forward passes: first pass "
          f"{outcome.prompt_ms:.1f} ms, the rest {outcome.predicted_ms:.1f} ms, total {total_ms:.1f} ms; "
          f"{described['dtype']} weights ({described['dtypeReason']})", file=sys.stderr)
    return 0


def _infill_job(backend: Backend, text: str, offset: int, args: argparse.Namespace) -> InfillJob:
    """The cursor's prefix and suffix, cut at line boundaries to what the model's positions hold, as a job."""
    from coda_engine.jobs import InfillJob
    from coda_lsp.context import TokenCounter, build_context
    from coda_lsp.documents import Document
    from coda_lsp.pipeline import POSITION_SLACK, infill_params
    from coda_lsp.settings import ContextSettings, GenerationSettings

    room = backend.max_positions - args.max_tokens - POSITION_SLACK
    ctx = build_context(Document("file:///infill", "", 0, text), offset, ContextSettings(context_tokens=max(16, room)),
                        TokenCounter(backend.tokenizer))
    generation = GenerationSettings(max_tokens=args.max_tokens, steps=args.steps, alg=args.alg or "entropy",
                                    exact=args.exact, cache_reuse=0)
    return InfillJob(ctx.prefix, ctx.suffix, args.max_tokens, infill_params(generation, args.max_tokens))


def _offset(text: str, line: int, column: int) -> int:
    """Offset of a 1-based line and column; ValueError names what is out of range."""
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        raise ValueError(f"--line {line} is outside the file (1..{len(lines)})")
    width = len(lines[line - 1].rstrip("\r")) + 1
    if not 1 <= column <= width:
        raise ValueError(f"--column {column} is outside line {line} (1..{width})")
    return sum(len(before) + 1 for before in lines[:line - 1]) + column - 1
