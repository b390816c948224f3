"""LatestWins: a newer request for the same document cancels the older one's task; other documents are untouched."""

from __future__ import annotations

import asyncio

import pytest

from coda_lsp.latest import LatestWins


async def test_latest_wins_cancels_the_previous_request_for_the_same_key() -> None:
    latest = LatestWins()

    async def request(key: str, duration_s: float) -> str:
        latest.claim(key)
        await asyncio.sleep(duration_s)
        return key

    older = asyncio.create_task(request("doc-a", 1.0))
    other = asyncio.create_task(request("doc-b", 0.05))
    await asyncio.sleep(0.01)
    newer = asyncio.create_task(request("doc-a", 0.05))
    assert await newer == "doc-a" and await other == "doc-b"
    with pytest.raises(asyncio.CancelledError):
        await older
