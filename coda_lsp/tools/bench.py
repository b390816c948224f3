"""python -m coda_lsp.tools.bench: request->response latency p50 / p95 over stdio, and the time spent outside the engine.

Drives the real `coda-lsp` process with pygls' LSP client: one fresh server per kind of completion, on real
Python source (the standard library's `email` package: the same code whatever version of this project runs):
- single-line: a cold request right after `name = ` of an assignment, the rest of the line removed;
- multi-line: a cold request at the end of a line that opens a block;
- typing: someone writing the rest of such an assignment, one character and one request (awaited) per keystroke,
  in one open document: consecutive requests share almost all of their context;
- accept: someone going on by accepting: a request where single-line's is, then up to ACCEPTS times: read the
  shown completion for READ_MS, accept it (insert it at the cursor), ask again at its end. The table splits the
  first requests from those after an accept;
- focus: the first keystroke in a document the user just opened: the document is opened, its cursor sent as
  coda/didFocus (as the VS Code extension and the Neovim config do), LOOK_MS later a character is typed there
  and completed. --warm-on-focus off measures the same without the canvas prepared ahead.
No answer of single-line, multi-line and typing comes from the completion cache: every request is at a new cursor
with text not seen before. Documents are opened under their paths in a copy of that package (the workspace: the
original lies in a folder git ignores, which the index skips), with TABS other modules open as tabs; --cross-file on|off sets coda.crossFile, so the two runs differ only in the
cross-file snippets."""

from __future__ import annotations

import argparse
import asyncio
import email
import logging
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import quantiles
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from coda_engine.tools.files import CODA_V0_DIR
from coda_lsp.cli import DEFAULT_MODEL

PACKAGE = Path(email.__file__).resolve().parent
TABS = 3  # the last modules, open in every run: the similar-code source searches them; samples come from the first


@dataclass(frozen=True)
class Workspace:
    folder: Path
    sources: tuple[Path, ...]

    @classmethod
    def copy_of(cls, package: Path, scratch: Path) -> "Workspace":
        folder = Path(shutil.copytree(package, scratch / package.name, ignore=shutil.ignore_patterns("__pycache__")))
        return cls(folder, tuple(sorted(folder.rglob("*.py"))))

    @property
    def tabs(self) -> tuple[Path, ...]:
        return self.sources[-TABS:]
_ASSIGNMENT = re.compile(r"^(\s*)([A-Za-z_][\w.]*) = \S")
_OPENER = re.compile(r"^\s*(def|if|for|while|with|class) .*:$")
READ_MS, ACCEPTS = 400, 10
LOOK_MS = 1000  # between a document's focus and its first keystroke


@dataclass(frozen=True)
class Sample:
    text: str
    position: types.Position
    document: int  # samples with the same number are edits of one open document, in order
    source: Path   # the module the text comes from: the document's uri


def single_line_samples(workspace: Workspace, count: int) -> list[Sample]:
    """Cursors right after `name = `, the rest of the line removed: the model completes the statement."""
    samples = []
    for source in workspace.sources:
        lines = source.read_text().split("\n")
        for number, line in enumerate(lines):
            match = _ASSIGNMENT.match(line)
            if match and len(samples) < count:
                cut = line[:match.end() - 1]
                text = "\n".join([*lines[:number], cut, *lines[number + 1:]])
                samples.append(Sample(text, types.Position(number, len(cut)), len(samples), source))
    return samples


def typing_samples(workspace: Workspace, count: int, keystrokes_per_line: int = 6) -> list[Sample]:
    """Keystrokes writing the first characters of assignments' right-hand sides (after `name = `), the rest of
    each line removed, `keystrokes_per_line` in a row per line."""
    samples: list[Sample] = []
    lines_done = 0
    for source in workspace.sources:
        lines = source.read_text().split("\n")
        for number, line in enumerate(lines):
            match = _ASSIGNMENT.match(line)
            if not match or len(samples) >= count:
                continue
            cut = match.end() - 1
            for typed in range(1, min(keystrokes_per_line, len(line) - cut, count - len(samples)) + 1):
                partial = line[:cut + typed]
                text = "\n".join([*lines[:number], partial, *lines[number + 1:]])
                samples.append(Sample(text, types.Position(number, len(partial)), lines_done, source))
            lines_done += 1
    return samples


def multi_line_samples(workspace: Workspace, count: int) -> list[Sample]:
    """Cursors at the end of a line that opens a block: the model writes lines of the block."""
    samples = []
    for source in workspace.sources:
        text = source.read_text()
        for number, line in enumerate(text.split("\n")):
            if _OPENER.match(line) and line.isascii() and len(samples) < count:
                samples.append(Sample(text, types.Position(number, len(line)), len(samples), source))
    return samples


async def start_client(model: Path, workspace: Workspace, options: dict[str, Any], device: str,
                       dtype: str | None) -> LanguageClient:
    """The real server on `model`, initialized, its model loaded and the workspace's tabs open."""
    client = LanguageClient("coda-lsp-bench", "0")
    command = [sys.executable, "-m", "coda_lsp", "--model", str(model), "--device", device, "--log-level", "ERROR"]
    await client.start_io(*command, *(["--dtype", dtype] if dtype else []))
    capabilities = types.ClientCapabilities(text_document=types.TextDocumentClientCapabilities(
        inline_completion=types.InlineCompletionClientCapabilities()))
    await client.initialize_async(types.InitializeParams(
        capabilities=capabilities, initialization_options={"coda": options}, root_uri=workspace.folder.as_uri(),
        workspace_folders=[types.WorkspaceFolder(uri=workspace.folder.as_uri(), name=workspace.folder.name)]))
    client.initialized(types.InitializedParams())
    await wait_ready(client)
    for version, tab in enumerate(workspace.tabs):
        client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
            uri=tab.as_uri(), language_id="python", version=version, text=tab.read_text())))
    return client


async def stop_client(client: LanguageClient) -> dict[str, Any]:
    """The server's coda/status, then a clean shutdown."""
    status = plain(await client.protocol.send_request_async("coda/status", {}))
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    return status


async def inline(client: LanguageClient, uri: str, position: types.Position) -> list[str]:
    result = await client.text_document_inline_completion_async(types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=position,
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic)))
    items = result.items if isinstance(result, types.InlineCompletionList) else (result or [])
    return [item.insert_text for item in items if isinstance(item.insert_text, str)]


async def run_kind(model: Path, workspace: Workspace, samples: list[Sample], options: dict[str, Any], device: str,
                   dtype: str | None) -> dict[str, Any]:
    """Start a server, send every sample once, and return client-side timings plus the server's status."""
    client = await start_client(model, workspace, options, device, dtype)
    client_ms = []
    for index, sample in enumerate(samples):
        uri = sample.source.as_uri()
        if index and samples[index - 1].document == sample.document:
            client.text_document_did_change(types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=index + 1),
                content_changes=[types.TextDocumentContentChangeWholeDocument(text=sample.text)]))
        else:
            client.text_document_did_open(types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(uri=uri, language_id="python", version=index + 1,
                                                     text=sample.text)))
        started = time.perf_counter()
        await inline(client, uri, sample.position)
        client_ms.append((time.perf_counter() - started) * 1000)
        if index + 1 == len(samples) or samples[index + 1].document != sample.document:
            client.text_document_did_close(types.DidCloseTextDocumentParams(
                text_document=types.TextDocumentIdentifier(uri=uri)))
    return {"client": client_ms, "status": await stop_client(client)}


async def run_accepts(model: Path, workspace: Workspace, samples: list[Sample], options: dict[str, Any],
                      device: str, dtype: str | None) -> dict[str, Any]:
    """Per sample, a first request, then up to ACCEPTS times: wait READ_MS, accept the shown text, ask again at
    its end. Returns the first requests' and the after-accept requests' client-side timings."""
    client = await start_client(model, workspace, options, device, dtype)
    first_ms, after_ms = [], []
    for index, sample in enumerate(samples):
        uri, text, position = sample.source.as_uri(), sample.text, sample.position
        client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
            uri=uri, language_id="python", version=0, text=text)))
        for accepted in range(ACCEPTS + 1):
            started = time.perf_counter()
            shown = await inline(client, uri, position)
            (after_ms if accepted else first_ms).append((time.perf_counter() - started) * 1000)
            if not shown or accepted == ACCEPTS:
                break
            await asyncio.sleep(READ_MS / 1000)
            text, position = _inserted(text, position, shown[0])
            client.text_document_did_change(types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=accepted + 1),
                content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)]))
        client.text_document_did_close(types.DidCloseTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=uri)))
    return {"client": first_ms, "after": after_ms, "status": await stop_client(client)}


async def run_focus(model: Path, workspace: Workspace, samples: list[Sample], options: dict[str, Any],
                    device: str, dtype: str | None) -> dict[str, Any]:
    """Per sample: open the document, send its cursor as coda/didFocus, wait LOOK_MS, type one character there and
    time its completion."""
    client = await start_client(model, workspace, options, device, dtype)
    client_ms = []
    for sample in samples:
        uri = sample.source.as_uri()
        line = sample.text.split("\n")[sample.position.line]
        typed, position = _inserted(sample.text, sample.position, line[sample.position.character:][:1] or " ")
        client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
            uri=uri, language_id="python", version=0, text=sample.text)))
        client.protocol.notify("coda/didFocus", {"textDocument": {"uri": uri},
                                                 "position": {"line": sample.position.line,
                                                              "character": sample.position.character}})
        await asyncio.sleep(LOOK_MS / 1000)
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=1),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=typed)]))
        started = time.perf_counter()
        await inline(client, uri, position)
        client_ms.append((time.perf_counter() - started) * 1000)
        client.text_document_did_close(types.DidCloseTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=uri)))
    return {"client": client_ms, "status": await stop_client(client)}


def _inserted(text: str, position: types.Position, inserted: str) -> tuple[str, types.Position]:
    """`text` with `inserted` at `position` (ASCII text: UTF-16 units are characters), and the end of it."""
    lines = text.split("\n")
    before = "\n".join(lines[:position.line] + [lines[position.line][:position.character]])
    after = text[len(before):]
    new_before = before + inserted
    return new_before + after, types.Position(new_before.count("\n"), len(new_before) - new_before.rfind("\n") - 1)


async def wait_ready(client: LanguageClient) -> None:
    """Until the model is loaded and the workspace index (when crossFile is on) is built."""
    while True:
        status = plain(await client.protocol.send_request_async("coda/status", {}))
        if status["state"] == "error":
            raise SystemExit(f"coda-lsp bench: the model failed to load: {status['error']}")
        if status["state"] == "ready" and plain(status["crossFile"])["state"] not in ("pending", "building"):
            return
        await asyncio.sleep(0.05)


def plain(value: Any) -> Any:
    """pygls' client returns untyped results as namedtuples."""
    if hasattr(value, "_asdict"):
        return {key: plain(item) for key, item in value._asdict().items()}
    return value


def _p(values: list[float], q: int) -> float:
    return quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def _default_model(preset: str, tokenizer_dir: Path, folder: Path) -> Path:
    from coda_engine.presets import write_random_checkpoint

    return write_random_checkpoint(folder / preset, preset=preset, seed=0, tokenizer_dir=tokenizer_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coda_lsp.tools.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help=f"checkpoint folder (default: {DEFAULT_MODEL} if present, "
                                                    "else a random checkpoint of --preset)")
    parser.add_argument("--preset", default="tiny", choices=["tiny", "small"])
    parser.add_argument("--tokenizer-dir", type=Path, default=CODA_V0_DIR,
                        help="tokenizer files for a random checkpoint (default: CoDA-v0's, shipped with coda_engine.tools)")
    parser.add_argument("--requests", type=int, default=30, help="requests per kind (default 30)")
    # Unset options keep the server's defaults, which are what the latency goals are about.
    parser.add_argument("--max-tokens", type=int, help="coda.maxTokens (default: the server's)")
    parser.add_argument("--single-line-tokens", type=int, help="coda.singleLineTokens (default: the server's)")
    parser.add_argument("--steps", type=int, help="coda.steps (default: the server's)")
    parser.add_argument("--debounce-ms", type=int, help="coda.debounceMs (default: the server's; part of the latency)")
    parser.add_argument("--exact", action="store_true", help="coda.exact: CoDA's reference loop, for comparison")
    parser.add_argument("--kinds", nargs="+", choices=["single-line", "multi-line", "typing", "accept", "focus"],
                        default=["single-line", "multi-line", "typing"],
                        help="kinds of request to measure (default: all but accept and focus)")
    parser.add_argument("--prefetch-next", choices=["on", "off"],
                        help="coda.prefetchNext: prepare the completion after an accept (default: the server's, on)")
    parser.add_argument("--warm-on-focus", choices=["on", "off"],
                        help="coda.warmOnFocus: prepare a focused cursor's context (default: the server's, on)")
    parser.add_argument("--cross-file", choices=["on", "off"], default="on",
                        help="coda.crossFile: snippets of the other modules before the prefix (default on)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", choices=["auto", "fp32", "bf16", "fp16", "int8"],
                        help="weights' format (default: the server's, auto)")
    args = parser.parse_args(argv)
    logging.getLogger("pygls").setLevel(logging.ERROR)  # the client ignores the server's logMessages, quietly
    given = {"maxTokens": args.max_tokens, "singleLineTokens": args.single_line_tokens, "steps": args.steps,
             "debounceMs": args.debounce_ms, "exact": args.exact or None, "crossFile": args.cross_file == "on",
             "prefetchNext": None if args.prefetch_next is None else args.prefetch_next == "on",
             "warmOnFocus": None if args.warm_on_focus is None else args.warm_on_focus == "on"}
    options = {key: value for key, value in given.items() if value is not None}
    with tempfile.TemporaryDirectory() as scratch:
        model = args.model or (DEFAULT_MODEL if DEFAULT_MODEL.is_dir() else
                               _default_model(args.preset, args.tokenizer_dir, Path(scratch)))
        workspace = Workspace.copy_of(PACKAGE, Path(scratch))
        kinds = {"single-line": single_line_samples, "multi-line": multi_line_samples, "typing": typing_samples,
                 "accept": lambda folder, count: single_line_samples(folder, -(-count // (ACCEPTS + 1))),
                 "focus": single_line_samples}
        results = {}
        runs = {"accept": run_accepts, "focus": run_focus}
        for kind in args.kinds:
            run = runs.get(kind, run_kind)
            samples = kinds[kind](workspace, args.requests)
            results[kind] = asyncio.run(run(model, workspace, samples, options, args.device, args.dtype))
    _print_table(model, args, results)
    return 0


def _print_table(model: Path, args: argparse.Namespace, results: dict[str, dict[str, Any]]) -> None:
    status = next(iter(results.values()))["status"]
    generation = status["settings"]["generation"]
    trigger = status["settings"]["trigger"]
    print(f"coda-lsp bench: {model} on {status['device']} ({status['dtype']}); "
          + ", ".join(f"{key} {value}" for key, value in generation.items())
          + f", debounce_ms {trigger['debounce_ms']}, prefetch_next {trigger['prefetch_next']}, warm_on_focus "
          f"{trigger['warm_on_focus']}, cross_file {status['settings']['cross_file']['enabled']} "
          f"({plain(status['crossFile'])['numFiles']} files indexed); times in ms")
    header = ("kind", "n", "request p50", "request p95", "engine p50", "engine p95", "outside engine p50",
              "outside engine p95")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for kind, result in results.items():
        if kind == "accept":
            continue
        latency = result["status"]["latency"]
        row = (kind, str(len(result["client"])), f"{_p(result['client'], 50):.1f}", f"{_p(result['client'], 95):.1f}",
               f"{latency['engineP50Ms']:.1f}", f"{latency['engineP95Ms']:.1f}",
               f"{latency['overheadP50Ms']:.2f}", f"{latency['overheadP95Ms']:.2f}")
        print(" | ".join(row))
    print("outside engine = time in the server's handler minus the engine's own time (context, trigger, cache,\n"
          "queue, filters, items); request = client-measured request -> response over stdio.")
    if "accept" in results:
        _print_accepts(results["accept"], trigger["prefetch_next"])


def _print_accepts(result: dict[str, Any], prefetch_next: bool) -> None:
    first, after = result["client"], result["after"]
    print(f"\naccept ({READ_MS} ms reading each completion; prefetchNext {prefetch_next}; work ahead "
          f"{plain(result['status']['workAhead'])}):")
    print("requests | n | p50 | p95\n--- | --- | --- | ---")
    print(f"first, after `name = ` | {len(first)} | {_p(first, 50):.1f} | {_p(first, 95):.1f}")
    if after:
        print(f"after an accept, at its end | {len(after)} | {_p(after, 50):.1f} | {_p(after, 95):.1f}")
        print(f"after-accept p50 / first p50: {_p(after, 50) / _p(first, 50):.2f}x")


if __name__ == "__main__":
    sys.exit(main())
