"""The imported-names source and the import resolution it relies on, per language: where a buffer uses what it
imports, re-exports, submodules imported by name, the workspace folder as a package, the ranking (a name imported
and not used yet first, then by nearness and frequency, the cursor's own line left out) and the lookups the
index remembers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from coda_lsp.crossfile.outline import FunctionIds, Import, ImportUses, outline
from coda_lsp.crossfile.query import cursor_query
from coda_lsp.crossfile.sources.imports import import_snippets
from coda_lsp.languages import GO, PYTHON, RUST, TYPESCRIPT, language_for
from tests.server.crossfile.golden_prompts import CURSOR, Workspace, load_workspace


def _workspace(tmp_path: Path, files: dict[str, str], current: str, **case: Any) -> Workspace:
    return load_workspace({"files": files, "current": current, "budget": 256, **case}, tmp_path,
                          lambda line: len(line.split()))


def _imported(workspace: Workspace) -> list[str]:
    """`path:line name-of-the-first-line` of each import snippet, best first."""
    doc = workspace.current
    language = language_for(doc.language_id, doc.uri)
    assert language is not None
    query = cursor_query(doc, workspace.offset, language, workspace.cross_file.path_of(doc.uri))
    return [f"{s.path}:{s.start_line + 1} {s.text.split(chr(10))[0]}"
            for s in import_snippets(query, workspace.cross_file.index)]


# ---- where a buffer uses its imports ---------------------------------------------------------------------------

def test_uses_are_found_for_a_buffer_only_and_leave_the_import_lines_out() -> None:
    source = ("import networkx as nx\nfrom .util import (grow,\n    shrink)\n\n\ndef run(g):\n"
              "    from .deep import later\n    return grow(nx.path_graph(3)) + nx . cycle_graph(later)\n# grow\n")
    on_disk = outline(PYTHON, source)
    assert on_disk.uses is None and on_disk.local_imports == ()
    buffer = outline(PYTHON, source, with_uses=True)
    assert buffer.local_imports == (Import(".deep", "later", None),)
    assert buffer.uses == ImportUses(
        names={"grow": (7, 8), "later": (7,)},  # a comment names it too: a weak hint, kept; line 2 is the import
        attributes={("nx", "path_graph"): (7,), ("nx", "cycle_graph"): (7,)},
        calls={"grow": (7,), "nx": (7,), ("nx", "path_graph"): (7,), ("nx", "cycle_graph"): (7,)},
        functions=(FunctionIds(5, 7, frozenset({"run", "deep", "later", "grow", "nx", "path_graph", "cycle_graph"})),))


def test_a_decorator_is_a_call_and_an_annotation_is_not() -> None:
    source = "import nx\nfrom .types import Headers\n\n\n@nx.dispatchable\ndef run(h: Headers) -> Headers:\n    pass\n"
    uses = outline(PYTHON, source, with_uses=True).uses
    assert uses is not None and uses.calls == {"nx": (4,), ("nx", "dispatchable"): (4,)}
    assert uses.names == {"Headers": (5,)}


def test_typescript_reexports_are_read_and_bind_no_local_name() -> None:
    source = ('import { a, b as c } from "./x";\nexport { d, e as f } from "./y";\nexport * from "./z";\n'
              'export * as ns from "./w";\nc(a);\n')
    result = outline(TYPESCRIPT, source, with_uses=True)
    assert result.imports == (Import("./x", "a", None), Import("./x", "b", "c"))
    assert result.reexports == (Import("./y", "d", None), Import("./y", "e", "f"), Import("./z", None, None))
    assert result.uses is not None and result.uses.names == {"a": (4,), "c": (4,)}


def test_go_and_rust_uses() -> None:
    go = outline(GO, 'package main\n\nimport "example.com/shop/price"\n\nfunc main() { price.Total(1) }\n',
                 with_uses=True)
    assert go.uses is not None and go.uses.attributes == {("price", "Total"): (4,)}
    rust = outline(RUST, "use crate::geo::{area, shapes};\nfn f() {\n    use crate::x::y;\n    shapes::unit();\n}\n",
                   with_uses=True)
    assert rust.local_imports == (Import("crate::x", "y", None),)
    assert rust.uses is not None and rust.uses.attributes == {("shapes", "unit"): (3,)}


# ---- resolution and ranking, per language ----------------------------------------------------------------------

PY_UTIL = '''def grow(items: list, by: int) -> list:
    """Longer."""
    return items * by


def shrink(items: list) -> list:
    return items[:-1]


def unused_elsewhere(x: int) -> int:
    """Imported, not used yet."""
    return x
'''


def test_python_an_unused_import_comes_first_then_the_nearest_and_most_used(tmp_path: Path) -> None:
    far = "".join(f"    step_{i} = {i}\n" for i in range(60))
    main = ("from app.util import grow, shrink, unused_elsewhere\n\n\ndef run(items):\n"
            f"    items = shrink(items)\n{far}    items = grow(items, 2)\n    items = grow(items, 3)\n"
            f"    {CURSOR}\n    return items\n")
    workspace = _workspace(tmp_path, {"app/util.py": PY_UTIL, "app/main.py": main}, "app/main.py")
    # the brief view: no docstring line, fewer tokens
    assert _imported(workspace) == ["app/util.py:10 def unused_elsewhere(x): ...",
                                    "app/util.py:1 def grow(items, by): ...",
                                    "app/util.py:6 def shrink(items): ..."]


def test_a_called_name_outranks_one_only_written_in_annotations(tmp_path: Path) -> None:
    """Every signature names the types; what the next line needs is what the code calls (openai's resources
    annotate each method with six types of _types.py and call make_request_options once)."""
    files = {"app/util.py": PY_UTIL, "app/types.py": "class Headers:\n    pass\n"}
    methods = "".join(f"def m{i}(h: Headers) -> Headers:\n    return h\n\n\n" for i in range(2))
    files["app/main.py"] = ("from app.types import Headers\nfrom app.util import shrink\n\n\n"
                            f"def first(items):\n    return shrink(items)\n\n\n{methods}{CURSOR}\n")
    # Headers' uses weigh 1.5 to shrink's 0.6; never called, a quarter of that
    assert _imported(_workspace(tmp_path, files, "app/main.py")) == [
        "app/util.py:6 def shrink(items): ...", "app/types.py:1 class Headers: ..."]


def test_what_followed_a_line_like_the_one_above_the_cursor_comes_first(tmp_path: Path) -> None:
    """A sync method and its async twin: after `return await self._get(` comes what came after `return
    self._get(`, though that was further up and the other names are used more (1.8 each to its 0.7, and 2 more
    for following such a line)."""
    files = {"app/util.py": PY_UTIL + "\n\ndef path_of(x: str) -> str:\n    return x\n"}
    busy = "".join(f"        grow(shrink([{i}]), {i})\n" for i in range(2))
    files["app/main.py"] = (
        "from app.util import grow, path_of, shrink\n\n\nclass Client:\n    def get(self):\n"
        "        return self._get(\n            path_of('/a'),\n        )\n\n    async def aget(self):\n"
        f"{busy}        return await self._get(\n            {CURSOR}\n        )\n")
    assert _imported(_workspace(tmp_path, files, "app/main.py"))[0] == "app/util.py:15 def path_of(x): ..."


def test_what_the_functions_most_like_the_code_at_the_cursor_use_comes_first(tmp_path: Path) -> None:
    """A rule per case: the function being written looks like one far above, which called `shrink` (0.2 for its
    use, 1.8 for that likeness); `grow`, used twice just above the cursor (1.6), would lead otherwise."""
    files = {"app/util.py": PY_UTIL}
    far = "pass\n" * 60  # no identifiers: the code before the cursor is the two functions' likeness (5 of 11)
    files["app/main.py"] = (
        "from app.util import grow, shrink\n\n\ndef lower_sin(ctx, operand, accuracy):\n"
        "    result = emit(ctx, 'sin', operand, accuracy)\n    return shrink(result)\n\n\n"
        f"{far}x = grow([1], 2)\ny = grow([2], 2)\n\n\n"
        f"def lower_cos(ctx, operand, accuracy):\n    result = emit(ctx, 'cos', operand, accuracy)\n    {CURSOR}\n")
    assert _imported(_workspace(tmp_path, files, "app/main.py"))[0] == "app/util.py:6 def shrink(items): ..."


def test_a_stub_stands_for_its_module_and_overloads_show_once(tmp_path: Path) -> None:
    files = {
        "app/util.py": PY_UTIL,
        "app/util.pyi": "def grow(items: list, by: int) -> list: ...\n",
        "app/shapes.py": ("from typing import overload\n\n\n@overload\ndef area(r: int) -> int: ...\n\n\n"
                          "@overload\ndef area(r: float) -> float: ...\n\n\ndef area(r):\n    return r * r\n"),
        "app/main.py": f"from app.util import grow\nfrom app.shapes import area\n\ngrow([1], 2)\narea(2)\n{CURSOR}\n",
    }
    assert _imported(_workspace(tmp_path, files, "app/main.py")) == [
        "app/shapes.py:12 def area(r): ...", "app/util.pyi:1 def grow(items, by): ..."]


def test_the_cursor_line_itself_never_counts(tmp_path: Path) -> None:
    """Typing a name on the cursor's line (and the index re-reading the buffer in a pause) changes nothing."""
    main = "from app.util import grow, shrink\n\nshrink([1])\n" + CURSOR + "\n"
    files = {"app/util.py": PY_UTIL, "app/main.py": main}
    before = _imported(_workspace(tmp_path / "a", files, "app/main.py"))
    typed = {**files, "app/main.py": main.replace(CURSOR, f"shrink(grow([1], 2)){CURSOR}")}
    assert _imported(_workspace(tmp_path / "b", typed, "app/main.py")) == before == [
        "app/util.py:1 def grow(items, by): ...",
        "app/util.py:6 def shrink(items): ..."]


def test_python_submodules_imported_by_name_local_imports_and_the_folder_as_package(tmp_path: Path) -> None:
    files = {
        "__init__.py": "from .core import make\n",
        "core.py": "def make(size: int) -> list:\n    return [0] * size\n",
        "util/__init__.py": "",
        "util/text.py": "def title(s: str) -> str:\n    return s.title()\n",
        "tests/test_core.py": ("import shop\nfrom ..util import text\n\n\ndef test_make():\n"
                               "    from ..core import make as build\n    assert shop.make(1) == build(1)\n"
                               "    assert text.title('a')\n" + CURSOR + "\n"),
    }
    # `shop` is the workspace folder's own name: `import shop` there is the folder's __init__.py; text.title is
    # used nearest the cursor
    assert _imported(_workspace(tmp_path, files, "tests/test_core.py")) == [
        "util/text.py:1 def title(s): ...", "core.py:1 def make(size): ..."]


def test_a_python_module_path_starts_at_an_import_root(tmp_path: Path) -> None:
    """Inside a package, pkg/numpy/ is `pkg.numpy`: `import numpy` is NumPy's and brings nothing from it, while
    a package under src/ (no package itself) is imported by its own name."""
    files = {
        "pkg/__init__.py": "", "pkg/numpy/__init__.py": "def where(c: bool) -> int:\n    return 1\n",
        "src/tools/__init__.py": "", "src/tools/text.py": "def title(s: str) -> str:\n    return s.title()\n",
        "pkg/app.py": f"import numpy as np\nfrom tools.text import title\n\nnp.where(1)\ntitle('a')\n{CURSOR}\n",
    }
    assert _imported(_workspace(tmp_path, files, "pkg/app.py")) == ["src/tools/text.py:1 def title(s): ..."]


def test_typescript_reexports_and_default_imports_resolve(tmp_path: Path) -> None:
    files = {
        "src/geo/impl.ts": "export function area(r: number): number {\n  return 3.14 * r * r;\n}\n",
        "src/geo/more.ts": "/** A unit. */\nexport const UNIT = 1;\n",
        "src/geo/index.ts": 'export { area as surface } from "./impl";\nexport * from "./more";\n',
        "src/shape.ts": "export default class Shape {\n  constructor(public sides: number) {}\n  name(): string {\n"
                        "    return '';\n  }\n}\n",
        "src/app.ts": ('import { surface, UNIT } from "./geo";\nimport Shape from "./shape";\n\n'
                       f"const s = new Shape(3);\n{CURSOR}\n"),
    }
    assert _imported(_workspace(tmp_path, files, "src/app.ts")) == [
        "src/geo/impl.ts:1 export function area(r: number): number { ... }",
        "src/geo/more.ts:2 export const UNIT = 1;",  # its doc comment is left out of the brief view
        "src/shape.ts:1 export default class Shape {"]


def test_an_es_module_import_of_a_folder_index_names_the_folder(tmp_path: Path) -> None:
    # ES modules write the file out: `./geo/index.js` is the folder's index, `./index.js` the importer's own folder's
    files = {
        "src/geo/impl.ts": "export function area(r: number): number {\n  return 3.14 * r * r;\n}\n",
        "src/geo/index.ts": 'export * from "./impl.js";\n',
        "src/index.ts": 'export { area as size } from "./geo/index.js";\n',
        "src/app.ts": f'import {{ size }} from "./index.js";\nimport * as geo from "./geo/index.js";\n\n{CURSOR}\n',
    }
    workspace = _workspace(tmp_path, files, "src/app.ts")
    assert _imported(workspace) == ["src/geo/impl.ts:1 export function area(r: number): number { ... }"]
    app = workspace.cross_file.index.get(tmp_path / "shop" / "src" / "app.ts")
    assert app is not None
    assert [f.relative for f in workspace.cross_file.index.module_files(app, "./geo/index.js")] == ["src/geo/index.ts"]


@pytest.mark.parametrize(("files", "current"), [
    ({"pkg/__init__.py": "", "pkg/main.py": "def run(n: int) -> int:\n    return n\n",
      "pkg/app.py": f"from pkg.main import run\n\n{CURSOR}\n"}, "pkg/app.py"),
    ({"src/main.ts": "export function run(n: number): number {\n  return n;\n}\n",
      "src/app.ts": f'import {{ run }} from "./main.js";\n\n{CURSOR}\n'}, "src/app.ts"),
], ids=["python", "typescript"])
def test_a_module_named_main_is_itself_not_its_folder(tmp_path: Path, files: dict[str, str], current: str) -> None:
    # only a package's __init__, a JS folder's index and Rust's mod / lib / main stand for their folder
    [snippet] = _imported(_workspace(tmp_path, files, current))
    assert snippet.startswith(("pkg/main.py:1 def run(n)", "src/main.ts:1 export function run("))


def test_a_namespace_import_passes_no_names_on(tmp_path: Path) -> None:
    # `import * as Option` binds `Option` in util.ts; `map` is option.ts's, and util.ts does not export it
    files = {
        "src/option.ts": "export function map(f: (a: number) => number): number {\n  return f(1);\n}\n",
        "src/util.ts": 'import * as Option from "./option";\nexport const helper = Option.map;\n',
        "src/app.ts": f'import {{ helper, map }} from "./util";\n\n{CURSOR}\n',
    }
    assert _imported(_workspace(tmp_path, files, "src/app.ts")) == ["src/util.ts:2 export const helper = Option.map;"]


def test_go_package_functions_used_far_away(tmp_path: Path) -> None:
    far = "".join(f"\t_ = {i}\n" for i in range(80))
    files = {
        "go.mod": "module example.com/shop\n",
        "internal/price/price.go": "package price\n\n// Total sums.\nfunc Total(p []float64) float64 {\n"
                                   "\treturn 0\n}\n\n// Tax is the rate.\nfunc Tax() float64 { return 0.2 }\n",
        "cmd/main.go": ('package main\n\nimport "example.com/shop/internal/price"\n\nfunc main() {\n'
                        f"\t_ = price.Tax()\n{far}\t_ = price.Total(nil)\n{CURSOR}\n}}\n"),
    }
    assert _imported(_workspace(tmp_path, files, "cmd/main.go")) == [
        "internal/price/price.go:4 func Total(p []float64) float64 { ... }",
        "internal/price/price.go:9 func Tax() float64 { ... }"]


def test_rust_use_of_names_and_of_a_module(tmp_path: Path) -> None:
    files = {
        "src/geo/shapes.rs": "/// The unit.\npub fn unit() -> f64 {\n    1.0\n}\n",
        "src/geo.rs": "pub mod shapes;\n/// Area.\npub fn area(r: f64) -> f64 {\n    r * r\n}\n",
        "src/main.rs": f"use crate::geo::{{area, shapes}};\n\nfn main() {{\n    shapes::unit();\n{CURSOR}\n}}\n",
    }
    assert _imported(_workspace(tmp_path, files, "src/main.rs")) == [
        "src/geo.rs:3 pub fn area(r: f64) -> f64 { ... }", "src/geo/shapes.rs:2 pub fn unit() -> f64 { ... }"]


def test_the_enclosing_signature_and_class_bases_count(tmp_path: Path) -> None:
    files = {
        "app/base.py": "class Base:\n    def __init__(self, name: str) -> None:\n        self.name = name\n",
        "app/kinds.py": "class Kind:\n    pass\n\n\nclass Other:\n    pass\n",
        "app/main.py": ("from app.base import Base\nfrom app.kinds import Kind, Other\n\nprint(Other)\n"
                        "print(Other)\n\n\nclass Thing(Base):\n    def run(self, kind: Kind) -> None:\n"
                        f"        {CURSOR}\n        pass\n"),
    }
    ranked = _imported(_workspace(tmp_path, files, "app/main.py"))
    # used twice a few lines up, Other would lead (0.4 against 0.24 and 0.23, none of them called); the
    # parameter's annotation and the class's base count as one more use at the cursor
    assert ranked == ["app/kinds.py:1 class Kind: ...", "app/base.py:1 class Base:", "app/kinds.py:5 class Other: ..."]


# ---- the lookups the index remembers ---------------------------------------------------------------------------

def test_the_memo_lives_until_a_file_s_exports_change(tmp_path: Path) -> None:
    files = {"pkg/__init__.py": "from .core import *\n", "pkg/core.py": "def make() -> int:\n    return 1\n",
             "app.py": f"import pkg\n\npkg.make()\n{CURSOR}\n"}
    workspace = _workspace(tmp_path, files, "app.py")
    index = workspace.cross_file.index
    assert _imported(workspace) == ["pkg/core.py:1 def make(): ..."]
    assert index.memo
    core = (tmp_path / "shop" / "pkg" / "core.py").as_uri()
    workspace.cross_file.reindex_text(core, "def make() -> int:\n    return 2\n", 1 << 20)  # a body edit
    assert index.memo
    workspace.cross_file.reindex_text(core, "def build() -> int:\n    return 2\n", 1 << 20)  # a new export
    assert not index.memo
    assert _imported(workspace) == []


def test_a_module_s_names_the_workspace_uses_most_when_the_file_uses_none(tmp_path: Path) -> None:
    files = {
        "pkg/__init__.py": "def make() -> int:\n    return 1\n\n\ndef other() -> int:\n    return 2\n",
        "a.py": "import pkg\n\npkg.make()\npkg.other()\n",
        "b.py": "import pkg as p\n\np.make()\n",
        "c.py": "import pkg\n\npkg.make()\n",
        "app.py": f"import pkg\n\n{CURSOR}\n",
    }
    workspace = _workspace(tmp_path, files, "app.py")
    assert _imported(workspace) == ["pkg/__init__.py:1 def make(): ...",
                                    "pkg/__init__.py:5 def other(): ..."]
    # the file's own uses are left out of the counts: what is typed in it does not move them
    app = workspace.cross_file.index.get(workspace.cross_file.path_of(workspace.current.uri))
    assert app is not None
    workspace.cross_file.reindex_text(workspace.current.uri, "import pkg\n\npkg.other()\n", 1 << 20)
    app = workspace.cross_file.index.get(app.path)
    assert app is not None and app.outline.module_attributes == {"pkg": frozenset({"other"})}
    assert workspace.cross_file.index.popular_attributes(app, "pkg", 8) == [("make", 3), ("other", 1)]


def test_a_buffer_that_stops_parsing_keeps_its_outline_until_it_parses_again(tmp_path: Path) -> None:
    main = "from app.util import grow, shrink\n\n\ndef run(items):\n    items = shrink(items)\n" + CURSOR + \
        "\n    return items\n"
    workspace = _workspace(tmp_path, {"app/util.py": PY_UTIL, "app/main.py": main}, "app/main.py")
    cross_file, doc = workspace.cross_file, workspace.current
    before = _imported(workspace)
    kept = cross_file.index.get(cross_file.path_of(doc.uri))
    # a pause in the middle of `print("ab`: tree-sitter loses the function and the import after the quote
    half_typed = doc.text[:workspace.offset] + '    print("ab' + doc.text[workspace.offset:]
    cross_file.reindex_text(doc.uri, half_typed, 1 << 20)
    typing = cross_file.index.get(cross_file.path_of(doc.uri))
    assert typing is not None and kept is not None and typing.outline is kept.outline and _imported(workspace) == before
    # once it parses again, the buffer is read: here a new import
    fixed = "from app.util import unused_elsewhere\n" + doc.text
    cross_file.reindex_text(doc.uri, fixed, 1 << 20)
    now = cross_file.index.get(cross_file.path_of(doc.uri))
    assert now is not None and Import("app.util", "unused_elsewhere", None) in now.outline.imports


def test_a_submodule_imported_by_name_offers_the_names_the_workspace_uses_most(tmp_path: Path) -> None:
    files = {
        "lib/utils/log.py": "def get_logger(name: str) -> object:\n    return name\n\n\ndef level() -> int:\n"
                            "    return 0\n",
        "lib/a.py": "from .utils import log\n\nlogger = log.get_logger(__name__)\n",
        "lib/models/b.py": "from ..utils import log\n\nlogger = log.get_logger(__name__)\nlog.level()\n",
        "lib/c.py": f"from .utils import log\n\n{CURSOR}\n",
    }
    workspace = _workspace(tmp_path, files, "lib/c.py")
    assert _imported(workspace) == ["lib/utils/log.py:1 def get_logger(name): ...",
                                    "lib/utils/log.py:5 def level(): ..."]
    b = workspace.cross_file.index.get(tmp_path / "shop" / "lib" / "models" / "b.py")
    assert b is not None and b.outline.module_attributes == {"..utils.log": frozenset({"get_logger", "level"})}
