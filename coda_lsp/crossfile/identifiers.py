"""Identifiers of a line (cached per line text), the stop words left out of them, and Jaccard similarity."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ATTRIBUTE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:\.|::)\s*([A-Za-z_][A-Za-z0-9_]*)")
# Keywords and the most common builtins of the supported languages: they say nothing about which code is
# related, and a definition of `self` or `len` is never what the user needs to see.
STOP_WORDS = frozenset("""
and as assert async await break class continue def del elif else except finally for from global if import in is
lambda nonlocal not or pass raise return try while with yield None True False self cls print len str int float
bool list dict set tuple object range type super isinstance enumerate zip map filter sorted open any all min max
function var let const new this typeof instanceof void delete switch case default do export extends implements
interface package private protected public static throw catch null undefined true false string number boolean
func go chan defer fallthrough goto map struct select nil error byte rune make append cap copy panic recover
fn impl mut pub use crate mod trait where match loop move ref unsafe dyn Self Some Ok Err Box Vec Option Result
""".split())


@lru_cache(maxsize=65536)
def line_identifiers(line: str) -> tuple[str, ...]:
    """The non-stop-word identifiers of one line, in order; cached, so a keystroke re-reads only its line."""
    return tuple(word for word in _IDENTIFIER.findall(line) if len(word) > 1 and word not in STOP_WORDS)


@lru_cache(maxsize=65536)
def line_attributes(line: str) -> tuple[tuple[str, str], ...]:
    """`(base, name)` of each `base.name` or `base::name` on one line: `nx.path_graph`, `fs::read`."""
    return tuple((base, name) for base, name in _ATTRIBUTE.findall(line) if name not in STOP_WORDS)


@lru_cache(maxsize=65536)
def line_identifier_set(line: str) -> frozenset[str]:
    """line_identifiers of one line as a set, cached alike: compared for every line around the cursor."""
    return frozenset(line_identifiers(line))


def identifier_set(lines: Iterable[str]) -> frozenset[str]:
    return frozenset(word for line in lines for word in line_identifiers(line))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    common = len(a & b)
    return common / (len(a) + len(b) - common)
