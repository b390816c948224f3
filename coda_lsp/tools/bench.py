"""python -m coda_lsp.tools.bench: request->response latency p50 / p95 over stdio, and the time spent outside the engine.

Drives the real `coda-lsp` process with pygls' LSP client, one fresh server per kind of request (--kinds), on real
Python source: the standard library's `email` package (the same code whatever version of this project runs), copied
into a workspace (the original lies in a folder git ignores, which the index skips) with TABS other modules open as
tabs; --cross-file on|off sets coda.crossFile, so the two runs differ only in the cross-file snippets. What each kind
sends, and why no answer comes from the completion cache: docs/benchmarks.md, "What the benchmark tools send"."""

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
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from statistics import quantiles
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from coda_engine.tools.files import CODA_V0_DIR
from coda_lsp.cli import DEFAULT_MODEL

PACKAGE = Path(email.__file__).resolve().parent
TABS = 3  # the last modules, open in every run: the similar-code source searches them; samples come from the first
_ASSIGNMENT = re.compile(r"^(\s*)([A-Za-z_][\w.]*) = \S")
_OPENER = re.compile(r"^\s*(def|if|for|while|with|class) .*:$")
READ_MS, ACCEPTS = 400, 10  # accept: how long each shown completion is read, and how many are accepted in a row
LOOK_MS = 1000  # focus: between a document's focus and its first keystroke


@dataclass(frozen=True)
class Workspace:
    folder: Path
    sources: tuple[Path, ...]  # sorted: samples come from the first, the last TABS are open as tabs

    @classmethod
    def copy_of(cls, package: Path, scratch: Path) -> "Workspace":
        folder = Path(shutil.copytree(package, scratch / package.name, ignore=shutil.ignore_patterns("__pycache__")))
        return cls(folder, tuple(sorted(folder.rglob("*.py"))))


@dataclass(frozen=True)
class Sample:
    text: str
    position: types.Position
    document: int  # samples with the same number are edits of one open document, in order
    source: Path   # the module the text comes from: the document's uri


def assignments(workspace: Workspace) -> Iterator[tuple[Path, list[str], int, int]]:
    """(module, its lines, line number, column right after `name = `) of each one-line-started assignment."""
    for source in workspace.sources:
        lines = source.read_text().split("\n")
        for number, line in enumerate(lines):
            if match := _ASSIGNMENT.match(line):
                yield source, lines, number, match.end() - 1


def with_line(lines: list[str], number: int, line: str) -> str:
    return "\n".join([*lines[:number], line, *lines[number + 1:]])


def single_line_samples(workspace: Workspace, count: int) -> list[Sample]:
    """Cursors right after `name = `, the rest of the line removed: the model completes the statement."""
    return [Sample(with_line(lines, number, lines[number][:cut]), types.Position(number, cut), index, source)
            for index, (source, lines, number, cut) in enumerate(islice(assignments(workspace), count))]


def typing_samples(workspace: Workspace, count: int, keystrokes_per_line: int = 6) -> list[Sample]:
    """Keystrokes writing the first characters of assignments' right-hand sides (after `name = `), the rest of
    each line removed, `keystrokes_per_line` in a row per line."""
    samples: list[Sample] = []
    for document, (source, lines, number, cut) in enumerate(assignments(workspace)):
        if len(samples) >= count:
            break
        for typed in range(1, min(keystrokes_per_line, len(lines[number]) - cut, count - len(samples)) + 1):
            partial = lines[number][:cut + typed]
            samples.append(Sample(with_line(lines, number, partial), types.Position(number, len(partial)), document,
                                  source))
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


async def start_client(model: Path, workspace: Workspace | None = None, options: dict[str, Any] | None = None,
                       device: str = "cpu", dtype: str | None = None) -> LanguageClient:
    """The real server on `model`, initialized and its model loaded; the workspace's tabs open."""
    client = LanguageClient("coda-lsp-tools", "0")
    await client.start_io(sys.executable, "-m", "coda_lsp", "--model", str(model), "--device", device, "--log-level",
                          "ERROR", *(["--dtype", dtype] if dtype else []))
    capabilities = types.ClientCapabilities(text_document=types.TextDocumentClientCapabilities(
        inline_completion=types.InlineCompletionClientCapabilities(),
        code_action=types.CodeActionClientCapabilities(
            resolve_support=types.ClientCodeActionResolveOptions(properties=["edit"]))))
    folders = [types.WorkspaceFolder(uri=workspace.folder.as_uri(), name=workspace.folder.name)] if workspace else None
    await client.initialize_async(types.InitializeParams(
        capabilities=capabilities, initialization_options={"coda": options or {}},
        root_uri=folders[0].uri if folders else None, workspace_folders=folders))
    client.initialized(types.InitializedParams())
    await wait_ready(client)
    for version, tab in enumerate(workspace.sources[-TABS:] if workspace else ()):
        open_document(client, tab.as_uri(), tab.read_text(), version)
    return client


async def stop_client(client: LanguageClient) -> dict[str, Any]:
    """The server's coda/status, then a clean shutdown."""
    status = plain(await client.protocol.send_request_async("coda/status", {}))
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    return status


def open_document(client: LanguageClient, uri: str, text: str, version: int = 0) -> None:
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=uri, language_id="python", version=version, text=text)))


def change_document(client: LanguageClient, uri: str, text: str, version: int) -> None:
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)]))


async def inline(client: LanguageClient, uri: str, position: types.Position,
                 trigger: types.InlineCompletionTriggerKind = types.InlineCompletionTriggerKind.Automatic,
                 ) -> tuple[list[str], float]:
    """The inline completions' texts at `position`, and the client-side ms the request took."""
    started = time.perf_counter()
    result = await client.text_document_inline_completion_async(types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=position,
        context=types.InlineCompletionContext(trigger_kind=trigger)))
    items = result.items if isinstance(result, types.InlineCompletionList) else (result or [])
    elapsed_ms = (time.perf_counter() - started) * 1000
    return [item.insert_text for item in items if isinstance(item.insert_text, str)], elapsed_ms


async def run_kind(model: Path, workspace: Workspace, samples: list[Sample], options: dict[str, Any], device: str,
                   dtype: str | None) -> dict[str, Any]:
    """Start a server, send every sample once, and return client-side timings plus the server's status."""
    client = await start_client(model, workspace, options, device, dtype)
    client_ms = []
    for index, sample in enumerate(samples):
        uri = sample.source.as_uri()
        if index and samples[index - 1].document == sample.document:
            change_document(client, uri, sample.text, index + 1)
        else:
            open_document(client, uri, sample.text, index + 1)
        client_ms.append((await inline(client, uri, sample.position))[1])
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
    for sample in samples:
        uri, text, position = sample.source.as_uri(), sample.text, sample.position
        open_document(client, uri, text)
        for accepted in range(ACCEPTS + 1):
            shown, elapsed_ms = await inline(client, uri, position)
            (after_ms if accepted else first_ms).append(elapsed_ms)
            if not shown or accepted == ACCEPTS:
                break
            await asyncio.sleep(READ_MS / 1000)
            text, position = _inserted(text, position, shown[0])
            change_document(client, uri, text, accepted + 1)
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
        uri, cursor = sample.source.as_uri(), sample.position
        line = sample.text.split("\n")[cursor.line]
        typed, position = _inserted(sample.text, cursor, line[cursor.character:][:1] or " ")
        open_document(client, uri, sample.text)
        client.protocol.notify("coda/didFocus", {"textDocument": {"uri": uri},
                                                 "position": {"line": cursor.line, "character": cursor.character}})
        await asyncio.sleep(LOOK_MS / 1000)
        change_document(client, uri, typed, 1)
        client_ms.append((await inline(client, uri, position))[1])
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coda_lsp.tools.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help=f"checkpoint folder (default: {DEFAULT_MODEL} if present, "
                                                    "else a random checkpoint of --preset)")
    parser.add_argument("--preset", default="tiny", choices=["tiny", "small"])
    parser.add_argument("--tokenizer-dir", type=Path, default=CODA_V0_DIR,
                        help="tokenizer files for a random checkpoint (default: CoDA-v0's, shipped with "
                             "coda_engine.tools)")
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
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    logging.getLogger("pygls").setLevel(logging.ERROR)  # the client ignores the server's logMessages, quietly
    switch = {"on": True, "off": False, None: None}
    given = {"maxTokens": args.max_tokens, "singleLineTokens": args.single_line_tokens, "steps": args.steps,
             "debounceMs": args.debounce_ms, "exact": args.exact or None, "crossFile": switch[args.cross_file],
             "prefetchNext": switch[args.prefetch_next], "warmOnFocus": switch[args.warm_on_focus]}
    options = {key: value for key, value in given.items() if value is not None}
    with tempfile.TemporaryDirectory() as scratch:
        if args.model is None and not DEFAULT_MODEL.is_dir():
            from coda_engine.presets import write_random_checkpoint  # torch: the client needs it nowhere else

            args.model = write_random_checkpoint(Path(scratch) / args.preset, preset=args.preset, seed=0,
                                                 tokenizer_dir=args.tokenizer_dir)
        model = args.model or DEFAULT_MODEL
        workspace = Workspace.copy_of(PACKAGE, Path(scratch))
        kinds = {"single-line": single_line_samples, "multi-line": multi_line_samples, "typing": typing_samples,
                 "accept": lambda folder, count: single_line_samples(folder, -(-count // (ACCEPTS + 1))),
                 "focus": single_line_samples}
        runs = {"accept": run_accepts, "focus": run_focus}
        results = {}
        for kind in args.kinds:
            samples = kinds[kind](workspace, args.requests)
            run = runs.get(kind, run_kind)
            results[kind] = asyncio.run(run(model, workspace, samples, options, args.device, args.dtype))
    _print_table(model, results)
    return 0


def _print_table(model: Path, results: dict[str, dict[str, Any]]) -> None:
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
