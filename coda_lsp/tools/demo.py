"""python -m coda_lsp.tools.demo (`make demo`): play the editor against the real server and print what it answers.

Starts `coda-lsp` over stdio with the default model, opens an example file, asks for an inline completion at a
cursor and for the "Fill this block with CoDA" action on an empty function, and prints each answer with its
latency. Everything goes through the same LSP messages VS Code or Neovim would send.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path

from lsprotocol import types

from coda_lsp.cli import DEFAULT_MODEL
from coda_lsp.tools.bench import inline, open_document, start_client, stop_client

EXAMPLE_URI = "file:///demo/inventory.py"
# ║ marks the inline-completion cursor; the `pass` body is what "Fill this block" replaces.
EXAMPLE = '''"""A tiny inventory of items with prices."""

import json


class Inventory:
    def __init__(self):
        self.items = {}

    def add(self, name, price, count=1):
        """Add `count` items called `name` at `price` each."""
        entry = self.items.setdefault(name, {"price": price, "count": 0})
        entry["count"] += count

    def total(self):
        """The value of everything in stock."""
        pass

    def save(self, path):
        with open(path, "w") as f:
            ║


def load(path):
    with open(path) as f:
        return json.load(f)
'''


def example_text() -> tuple[str, types.Position, types.Position]:
    """The example without its cursor mark, the inline-completion cursor, and the start of the `pass` to fill."""
    lines = EXAMPLE.split("\n")
    row = next(i for i, line in enumerate(lines) if "║" in line)
    fill_row = next(i for i, line in enumerate(lines) if line.strip() == "pass")
    return (EXAMPLE.replace("║", ""), types.Position(line=row, character=lines[row].index("║")),
            types.Position(line=fill_row, character=lines[fill_row].index("pass")))


async def demo(model: Path, device: str) -> None:
    text, cursor, spot = example_text()
    started = time.perf_counter()
    client = await start_client(model, device=device)
    print(f"server ready with {model} in {(time.perf_counter() - started) * 1000:.0f} ms\n")
    open_document(client, EXAMPLE_URI, text, version=1)

    shown, elapsed_ms = await inline(client, EXAMPLE_URI, cursor, types.InlineCompletionTriggerKind.Invoked)
    print(f"inline completion at line {cursor.line + 1}, column {cursor.character + 1} ({elapsed_ms:.0f} ms):")
    print(indent(shown[0] if shown else "(no suggestion)"))

    asked = time.perf_counter()
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=EXAMPLE_URI), range=types.Range(start=spot, end=spot),
        context=types.CodeActionContext(diagnostics=[])))
    fill = next((a for a in actions or [] if isinstance(a, types.CodeAction) and "Fill" in a.title), None)
    if fill is None:
        print("\nno 'Fill this block' action was offered")
    else:
        resolved = await client.code_action_resolve_async(fill)
        edits = [e for changes in (resolved.edit.changes or {}).values() for e in changes] if resolved.edit else []
        print(f"\n{fill.title!r} on `total` ({(time.perf_counter() - asked) * 1000:.0f} ms):")
        print(indent(edits[0].new_text if edits else "(no edit)"))
    print("\nserver status:", await stop_client(client))


def indent(text: str) -> str:
    return "\n".join("    | " + line for line in text.split("\n"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coda_lsp.tools.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="checkpoint folder (default: %(default)s)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if not (args.model / "config.json").is_file():
        print(f"coda-lsp demo: no model at {args.model}; run `make default-model` or pass --model",
              file=sys.stderr)
        return 1
    logging.getLogger("pygls").setLevel(logging.ERROR)
    asyncio.run(demo(args.model, args.device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
