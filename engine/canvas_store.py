"""The kept canvases: each client's finished canvases and their keys and values, within a byte budget."""

from __future__ import annotations

from collections import OrderedDict

from .cache import CanvasCache, common_length, shared_prefix

# A client (an HTTP client's slot, or one document of the language server) keeps a few canvases: llama.vim warms
# several cursor positions; more would let one client crowd out the others.
CANVASES_PER_CLIENT = 4

StoreKey = tuple[str, int]


class CanvasStore:
    """Finished canvases by client, least recently used out first once past the budget. A job starts from its
    client's canvas that shares the most tokens with its own."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[StoreKey, CanvasCache] = OrderedDict()
        self._next_id = 0

    @property
    def num_bytes(self) -> int:
        return sum(entry.cache.num_bytes for entry in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def best(self, client: str, ids: list[int], span: tuple[int, int]) -> tuple[StoreKey, CanvasCache] | None:
        """The client's entry sharing the most prefix and suffix tokens with canvas `ids`, marked recently used."""
        best, best_shared = None, 0
        for key, entry in self._entries.items():
            if key[0] != client:
                continue
            shared = shared_prefix(entry.ids[:entry.span[0]], ids[:span[0]])[1] + common_length(
                entry.ids[entry.span[1]:], ids[span[1]:])
            if shared > best_shared:
                best, best_shared = key, shared
        if best is None:
            return None
        self._entries.move_to_end(best)
        return best, self._entries[best]

    def put(self, client: str, canvas: CanvasCache, replacing: StoreKey | None) -> None:
        """Keep `canvas` for `client`, in place of the entry its job started from (its successor)."""
        if replacing is not None:
            self._entries.pop(replacing, None)
        key = (client, self._next_id)
        self._next_id += 1
        self._entries[key] = canvas
        own = [k for k in self._entries if k[0] == client]
        for old in own[:-CANVASES_PER_CLIENT]:
            del self._entries[old]
        while self._entries and self.num_bytes > self.budget_bytes:
            self._entries.popitem(last=False)
