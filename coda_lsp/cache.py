"""LRU of finished completions keyed on what the engine sees (prefix, suffix, settings), plus typing-through."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

# Typing-through covers the first this-many characters of a suggestion: past a line or two the user is
# writing their own code and a fresh infill sees more.
MAX_FORWARD_CHARS = 64


@dataclass(frozen=True)
class CacheKey:
    """Everything that changes the answer: the two texts, the language and the generation settings (the scope
    is not part of it: it follows from the texts and the language)."""

    params: str
    prefix: str
    suffix: str

    @property
    def digest(self) -> str:
        """The key as a short string: what identifies the job that answers it (InfillJob.key)."""
        return self.hasher().hexdigest()

    def hasher(self) -> Any:
        # The prefix goes last, so the digest of `prefix + typed` can continue from a copy of this one.
        hasher = hashlib.blake2b(digest_size=16)
        for part in (self.params, "\0", self.suffix, "\0", self.prefix):
            hasher.update(_bytes(part))
        return hasher


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


class CompletionCache:
    """Maps digests of (params, prefix, suffix) to the final completion texts (best first). Storing them also
    stores the best one's forwarded states: after the user types its first k characters the rest is served
    with no model call.
    Keys are 16-byte digests, so thousands of forwarded entries cost a few hundred kB, not copies of the prefix."""

    def __init__(self, max_entries: int = 4096) -> None:
        self._entries: OrderedDict[bytes, tuple[str, ...]] = OrderedDict()
        self._max_entries = max_entries
        self.num_hits = 0
        self.num_misses = 0

    def get(self, key: CacheKey, count: bool = True) -> tuple[str, ...] | None:
        """The texts stored for `key`; `count`: a request's look-up, counted as a hit or a miss."""
        digest = key.hasher().digest()
        texts = self._entries.get(digest)
        if texts is None:
            self.num_misses += count
            return None
        self._entries.move_to_end(digest)
        self.num_hits += count
        return texts

    def put(self, key: CacheKey, texts: tuple[str, ...]) -> None:
        """Store `texts` for `key` (an empty tuple remembers "nothing usable here"), and for the best text each
        remainder `text[k:]` under the prefix extended by `text[:k]`."""
        base = key.hasher()
        self._store(base.digest(), texts)
        best = texts[0] if texts else ""
        for typed in range(1, min(len(best), MAX_FORWARD_CHARS)):
            if best[typed:].strip():
                forwarded = base.copy()
                forwarded.update(_bytes(best[:typed]))
                self._store(forwarded.digest(), (best[typed:],))

    def _store(self, digest: bytes, texts: tuple[str, ...]) -> None:
        self._entries[digest] = texts
        self._entries.move_to_end(digest)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
