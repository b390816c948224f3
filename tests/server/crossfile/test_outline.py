"""outline: definitions (one-line signatures, a class by its constructor) and imports per language, from real source."""

from __future__ import annotations

from coda_lsp.crossfile.outline import Import, outline, without_annotations
from coda_lsp.languages import GO, JAVASCRIPT, PYTHON, RUST, TYPESCRIPT

PYTHON_SOURCE = '''import os
from .shapes import Circle as C, scale
from pkg.util import *
import pkg.io as pio

UNIT: float = 1.0


class Circle(Shape):
    """A circle.

    More text that stays out."""

    SIDES = 0

    def __init__(self, radius: float) -> None:
        self.radius = radius

    @property
    def area(self) -> float:
        return 3.14 * self.radius ** 2


def scale(shape: Circle,
          factor: float) -> Circle:  # keeps the type
    return Circle(shape.radius * factor)
'''


def test_python_definitions_show_signatures_without_doc_lines() -> None:
    result = outline(PYTHON, PYTHON_SOURCE)
    by_name = {(d.name, d.container): d for d in result.definitions}
    assert [(d.name, d.kind) for d in result.definitions] == [
        ("UNIT", "constant"), ("Circle", "class"), ("__init__", "method"), ("area", "method"),
        ("scale", "function")]
    # a class is how to make one: its header and constructor
    assert by_name["Circle", None].text == 'class Circle(Shape):\n    def __init__(self, radius: float) -> None: ...'
    assert by_name["area", "Circle"].text == "class Circle(Shape):\n    def area(self) -> float: ..."
    # a comment after the colon would swallow a same-line `...`
    assert by_name["scale", None].text == "def scale(shape: Circle, factor: float) -> Circle:  # keeps the type\n    ..."
    assert (by_name["scale", None].start_line, by_name["scale", None].end_line) == (23, 25)


def test_python_imports() -> None:
    assert outline(PYTHON, PYTHON_SOURCE).imports == (
        Import("os", None, None), Import(".shapes", "Circle", "C"), Import(".shapes", "scale", None),
        Import("pkg.util", None, None), Import("pkg.io", None, "pio"))


def test_typescript_definitions_and_imports() -> None:
    source = '''import { area, Shape as S } from "./shapes";
import * as geo from "../geo";
import Default from './default';

/** Radius of the unit circle. */
export const UNIT = 1;
export interface Point { x: number; y: number }
export function scale(shape: S, factor: number): S {
  return shape;
}
export class Circle extends Base {
  radius = 1;
  area(): number {
    return 3.14;
  }
}
const double = (x: number): number => x * 2;
'''
    result = outline(TYPESCRIPT, source)
    texts = {(d.name, d.kind): d.text for d in result.definitions}
    assert texts["UNIT", "constant"] == "export const UNIT = 1;"  # no doc comment
    assert texts["Point", "type"] == "export interface Point { x: number; y: number }"
    assert texts["scale", "function"] == "export function scale(shape: S, factor: number): S { ... }"
    assert texts["Circle", "class"] == "export class Circle extends Base {\n  radius = 1\n  area(): number { ... }\n}"
    assert texts["area", "method"] == "export class Circle extends Base {\n  area(): number { ... }\n}"
    assert texts["double", "function"] == "const double = (x: number): number => { ... }"
    assert result.imports == (Import("./shapes", "area", None), Import("./shapes", "Shape", "S"),
                              Import("../geo", None, "geo"), Import("./default", "default", "Default"))


def test_go_definitions_and_imports() -> None:
    source = '''package geo

import (
	"fmt"
	m "example.com/app/mathx"
)

// Area returns the area.
// It is exact.
func Area(r float64) float64 { return r * r }

func (c *Circle) Scale(f float64) *Circle { return c }

type Circle struct {
	R float64
}

const (
	Unit = 1
	Two  = 2
)
'''
    result = outline(GO, source)
    texts = {(d.name, d.kind): d.text for d in result.definitions}
    assert texts["Area", "function"] == "func Area(r float64) float64 { ... }"
    assert texts["Scale", "method"] == "func (c *Circle) Scale(f float64) *Circle { ... }"
    assert next(d for d in result.definitions if d.name == "Scale").container == "Circle"
    assert texts["Circle", "type"] == "type Circle struct {\n\tR float64\n}"
    assert texts["Two", "constant"] == "const Two  = 2"
    assert result.imports == (Import("fmt", None, None), Import("example.com/app/mathx", None, "m"))


def test_rust_definitions_and_imports() -> None:
    source = '''use crate::shapes::{Circle, area as surface};
use super::util::*;

/// Scales a circle.
pub fn scale(c: &Circle, f: f64) -> Circle {
    Circle { r: c.r * f }
}

pub trait Shape {
    fn area(&self) -> f64;
}

impl Circle {
    pub fn new(r: f64) -> Self { Circle { r } }
}

pub const UNIT: f64 = 1.0;
'''
    result = outline(RUST, source)
    texts = {(d.name, d.kind): d.text for d in result.definitions}
    assert texts["scale", "function"] == "pub fn scale(c: &Circle, f: f64) -> Circle { ... }"
    assert texts["Shape", "type"] == "pub trait Shape {\n    fn area(&self) -> f64;\n}"
    assert texts["new", "method"] == "impl Circle {\n    pub fn new(r: f64) -> Self { ... }\n}"
    assert texts["UNIT", "constant"] == "pub const UNIT: f64 = 1.0;"
    assert result.imports == (Import("crate::shapes", "Circle", None), Import("crate::shapes", "area", "surface"),
                              Import("super::util", None, None))


def test_a_file_that_does_not_parse_keeps_what_tree_sitter_recovers() -> None:
    source = "def good(a):\n    return a\n\nif x ==:\n    pass\n\nclass Later:\n    pass\n"
    assert [d.name for d in outline(PYTHON, source).definitions] == ["good", "Later"]


def test_a_call_left_open_keeps_the_imports_and_definitions_around_it() -> None:
    # the first line of a call over several lines emptied: tree-sitter wraps the rest of the module in an ERROR
    source = ("import os\nfrom .shapes import scale\n\nLIMIT = 3\n\n\ndef run(shape):\n"
              "    \n        shape, factor=2\n    )\n    total = 1\n    return total\n")
    result = outline(PYTHON, source)
    assert result.syntax_errors == 1
    assert result.imports == (Import("os", None, None), Import(".shapes", "scale", None))
    # the indented `total = 1` that tree-sitter lifts out of run's body is no constant of the module
    assert [d.name for d in result.definitions] == ["LIMIT", "run"]


def test_a_text_that_parses_worse_keeps_the_known_outline_and_reads_the_uses_it_lacks() -> None:
    # tree-sitter-typescript 0.23 reads no `out` variance: this file never parses whole, and an open brace being
    # typed in `run` loses `LIMIT`; the count of errors, not whether there are any, tells the two apart
    source = ('import { grow } from "./util"\n\nexport interface Box<out A> {\n  readonly value: A\n}\n\n'
              'export function run(box: Box<number>): number {\n  return grow(box.value)\n}\n\n'
              'export const LIMIT = grow(3)\n')
    typing = source.replace("  return grow(box.value)\n", "  if (box.value > 1) {\n")
    assert [d.name for d in outline(TYPESCRIPT, typing).definitions] == ["Box", "run"]
    from_disk = outline(TYPESCRIPT, source)  # how the index reads a file: no uses
    opened = outline(TYPESCRIPT, typing, with_uses=True, known=from_disk)
    assert (from_disk.syntax_errors, outline(TYPESCRIPT, typing).syntax_errors, opened.syntax_errors) == (1, 2, 1)
    assert (opened.definitions, opened.imports) == (from_disk.definitions, from_disk.imports)
    assert opened.uses is not None and opened.uses.names == {"grow": (10,)}  # the typed line's `grow` is gone
    # a buffer's outline is kept whole, its uses too: a broken parse may lose the calls after the cursor
    buffer = outline(TYPESCRIPT, source, with_uses=True)
    assert outline(TYPESCRIPT, typing, with_uses=True, known=buffer) is buffer
    # as many errors as the known outline, or fewer: the text is read
    assert outline(TYPESCRIPT, source + "export const MORE = 1\n", known=buffer).definitions[-1].name == "MORE"


def test_binary_like_text_does_not_crash() -> None:
    assert outline(PYTHON, "\x00\x01\ufffd" * 100 + "\ndef f(): ...\n").definitions[-1].name == "f"


def test_commonjs_requires_are_imports() -> None:
    source = "const fs = require('fs')\nconst { join, resolve: res } = require('./paths.js')\nconst x = 1\n"
    assert outline(JAVASCRIPT, source).imports == (Import("fs", None, "fs"), Import("./paths.js", "join", None),
                                                   Import("./paths.js", "resolve", "res"))


def test_a_long_signature_keeps_its_first_and_last_parameters() -> None:
    params = "".join(f"    p{i}: int,\n" for i in range(12))
    source = f"def wide(\n{params}) -> int:\n    \"\"\"Many parameters.\"\"\"\n    return 0\n"
    [definition] = outline(PYTHON, source).definitions
    assert definition.text == "def wide(p0: int, p1: int, p2: int, ...) -> int: ..."


def test_views_leave_out_doc_lines_and_all_class_members_but_the_constructor() -> None:
    source = '''class Circle(Shape):
    r"""
    A circle: the docstring's first line that says something is the one shown.
    """

    def __init__(
        self,
        radius: float,
        centre: tuple[float, float] = (0, 0),
    ) -> None:
        self.radius = radius

    def area(self) -> float:
        return 3.14


class Point:
    """A dataclass: its fields are how to make one."""
    x: float
    y: float
    z: float = 0.0


def scale(shape,  # any shape
          factor):
    """Scale it."""
'''
    found = {d.name: d for d in outline(PYTHON, source).definitions}
    # one parameter per line is joined into one line, the trailing comma dropped
    assert found["Circle"].text == ("class Circle(Shape):\n    def __init__(self, radius: float, "
                                    "centre: tuple[float, float] = (0, 0)) -> None: ...")
    assert found["__init__"].text == found["Circle"].text
    assert found["area"].text == "class Circle(Shape):\n    def area(self) -> float: ..."
    # without a constructor, the first MAX_CLASS_MEMBERS members
    assert found["Point"].text == "class Point:\n    x: float\n    y: float"
    # a comment in the parameters would swallow what follows it on one line: the lines stay
    assert found["scale"].text == "def scale(shape,  # any shape\n          factor): ..."


def test_typescript_views() -> None:
    source = '''/** A point. */
export class Point extends Base {
  static origin = 0;
  constructor(
    public x: number,
    public y: number,
  ) {
    super();
  }
  norm(): number {
    return 0;
  }
}

/** Adds. */
export function add(a: number, b: number): number {
  return a + b;
}
'''
    found = {d.name: d for d in outline(TYPESCRIPT, source).definitions if d.container is None}
    assert found["Point"].text == \
        "export class Point extends Base {\n  constructor(public x: number, public y: number) { ... }\n}"
    assert found["add"].text == "export function add(a: number, b: number): number { ... }"


def test_a_python_view_without_annotations_keeps_names_defaults_and_markers() -> None:
    assert without_annotations("def f(a: int, b: dict[str, int] = {}, /, *rest: str, key: str = \":\", "
                               "**more: Any) -> tuple[int, str]: ...") == \
        'def f(a, b={}, /, *rest, key=":", **more): ...'
    assert without_annotations("class Circle(Shape):\n    def __init__(self, radius: float) -> None: ...") == \
        "class Circle(Shape):\n    def __init__(self, radius): ..."
    # a dataclass's fields are how to make one; a view that does not parse stays as it is, but for the `...` of a
    # long parameter list
    assert without_annotations("class Point:\n    x: float") == "class Point:\n    x: float"
    assert without_annotations("def f(a: int = (1,) -> int: ...") == "def f(a: int = (1,) -> int: ..."
    assert without_annotations("def wide(p0: int, ...) -> int: ...") == "def wide(p0, ...): ..."
