"""cache: LRU keyed on params + prefix + suffix; typing-through serves the rest of a shown completion."""

from __future__ import annotations

from coda_lsp.cache import MAX_FORWARD_CHARS, CacheKey, CompletionCache


def test_hit_needs_same_prefix_suffix_and_params() -> None:
    cache = CompletionCache()
    cache.put(CacheKey("p", "def f(", ")\n"), ("x, y", "x"))
    assert cache.get(CacheKey("p", "def f(", ")\n")) == ("x, y", "x")
    assert cache.get(CacheKey("q", "def f(", ")\n")) is None
    assert cache.get(CacheKey("p", "def f(", "):\n")) is None
    assert (cache.num_hits, cache.num_misses) == (1, 2)


def test_typing_through() -> None:
    cache = CompletionCache()
    cache.put(CacheKey("p", "x = ", "\n"), ("compute(a, b)", "other(c)"))
    assert cache.get(CacheKey("p", "x = c", "\n")) == ("ompute(a, b)",)
    assert cache.get(CacheKey("p", "x = compute(a", "\n")) == (", b)",)
    assert cache.get(CacheKey("p", "x = o", "\n")) is None  # only the shown (best) text is typed through
    assert cache.get(CacheKey("p", "x = compose", "\n")) is None


def test_typing_through_is_bounded() -> None:
    cache = CompletionCache()
    text = "y" * (MAX_FORWARD_CHARS + 10)
    cache.put(CacheKey("p", "", ""), (text,))
    assert cache.get(CacheKey("p", text[:MAX_FORWARD_CHARS - 1], "")) is not None
    assert cache.get(CacheKey("p", text[:MAX_FORWARD_CHARS + 1], "")) is None


def test_least_recently_used_is_evicted() -> None:
    cache = CompletionCache(max_entries=2)
    cache.put(CacheKey("p", "a", ""), ("1",))
    cache.put(CacheKey("p", "b", ""), ("2",))
    cache.get(CacheKey("p", "a", ""))
    cache.put(CacheKey("p", "c", ""), ("3",))
    assert cache.get(CacheKey("p", "b", "")) is None
    assert cache.get(CacheKey("p", "a", "")) == ("1",) and len(cache) == 2


def test_nothing_usable_is_remembered() -> None:
    cache = CompletionCache()
    cache.put(CacheKey("p", "a", ""), ())
    assert cache.get(CacheKey("p", "a", "")) == ()
