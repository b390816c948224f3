"""End to end over TCP: `coda-lsp --tcp HOST:PORT` serves one client on the loopback address."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def _send(writer: asyncio.StreamWriter, message: dict) -> None:
    body = json.dumps(message).encode()
    writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    await writer.drain()


async def _receive(reader: asyncio.StreamReader) -> dict:
    length = 0
    while (line := await reader.readline()) != b"\r\n":
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return json.loads(await reader.readexactly(length))


async def test_initialize_and_shutdown_over_tcp(tiny_checkpoint: Path) -> None:
    port = _free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "coda_lsp", "--model", str(tiny_checkpoint), "--tcp", f"127.0.0.1:{port}",
        stderr=asyncio.subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("the server never listened")
        await _send(writer, {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                             "params": {"processId": None, "rootUri": None, "capabilities": {}}})
        answer = await asyncio.wait_for(_receive(reader), timeout=30)
        assert answer["id"] == 1 and "inlineCompletionProvider" in answer["result"]["capabilities"]
        await _send(writer, {"jsonrpc": "2.0", "id": 2, "method": "shutdown"})
        while (await asyncio.wait_for(_receive(reader), timeout=30)).get("id") != 2:
            pass  # logMessage notifications from the model load may come first
        await _send(writer, {"jsonrpc": "2.0", "method": "exit"})
        assert await asyncio.wait_for(server.wait(), timeout=30) == 0
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
