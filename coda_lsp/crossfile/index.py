"""WorkspaceIndex: every indexed file's outline, with lookups by defined name and by module path."""

from __future__ import annotations

import heapq
import posixpath
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from coda_lsp.crossfile.discovery import Refusal, is_inside, read_source
from coda_lsp.crossfile.outline import Definition, FileOutline, Import, outline
from coda_lsp.languages import LanguageInfo, language_for

# Module files that stand for their folder, per family: `import pkg` is pkg/__init__.py, `./lib` is lib/index.ts,
# a Rust module its mod.rs (a crate its lib.rs or main.rs); any other stem is a module of its own (`pkg.main`).
_FOLDER_MODULES = {"python": frozenset({"__init__"}), "js": frozenset({"index"}),
                   "rust": frozenset({"mod", "lib", "main"})}
# Languages whose files may import each other (JS imports TS and back).
_FAMILY = {"javascript": "js", "typescript": "js", "tsx": "js"}
_JS_EXTENSIONS = (".js", ".jsx", ".mjs", ".cjs", ".ts", ".tsx", ".mts", ".cts")


@dataclass(frozen=True, eq=False)
class IndexedFile:
    path: Path           # absolute, resolved
    relative: str        # to its workspace folder, '/'-separated
    language: LanguageInfo
    outline: FileOutline

    @cached_property
    def family(self) -> str:  # cached: the lookups compare it for every candidate file
        return _FAMILY.get(self.language.grammar, self.language.grammar)

    @cached_property
    def _by_name(self) -> dict[str, tuple[Definition, ...]]:
        table: dict[str, list[Definition]] = {}
        for definition in self.outline.definitions:
            table.setdefault(definition.name, []).append(definition)
        return {name: tuple(found) for name, found in table.items()}

    def named(self, name: str) -> tuple[Definition, ...]:
        """This file's definitions of `name` (a method may share its name with a function), in file order."""
        return self._by_name.get(name, ())

    @cached_property
    def exports(self) -> tuple[frozenset[str], tuple[Import, ...], tuple[Import, ...]]:
        """What other files' imports can see of this one: its top-level names, its imports and re-exports.
        Typing in a function body leaves it the same, so lookups through the file stay remembered."""
        names = frozenset(d.name for d in self.outline.definitions if d.container is None)
        return names, self.outline.imports, self.outline.reexports


def uri_to_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        return None
    return Path(unquote(parsed.path))


def family_of(language: LanguageInfo) -> str:
    return _FAMILY.get(language.grammar, language.grammar)


def index_file(path: Path, folder: Path, max_bytes: int, text: str | None = None,
               known: FileOutline | None = None) -> IndexedFile | Refusal:
    """The outline of one file (read from disk unless the editor's `text` is given, then with its import uses,
    and with `known`, its last outline, for what a text that parses worse keeps of it; see outline). Parsing
    never raises: tree-sitter recovers from syntax errors, and a file it cannot read is a Refusal."""
    language = language_for("", path.name)
    if language is None:
        return Refusal("not a supported language")
    is_buffer = text is not None  # an editor's buffer: completions happen in it, so its import uses are wanted
    if text is None:
        read = read_source(path, folder, max_bytes)
        if isinstance(read, Refusal):
            return read
        text = read
    elif len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        return Refusal(f"over the {max_bytes}-byte cap")
    try:
        file_outline = outline(language, text, with_uses=is_buffer, known=known)
    except (ValueError, RuntimeError) as exc:
        return Refusal(f"does not parse: {exc}")
    return IndexedFile(path, path.relative_to(folder).as_posix(), language, file_outline)


def _module_keys(file: IndexedFile, is_package: Callable[[Path], bool]) -> tuple[str, ...]:
    """The '/'-joined tails of the file's module path that an import may name: a/b/c.py -> c, b/c, a/b/c (a
    package may sit under src/ or in a monorepo's folders); a Go file is its folder. A Python tail must start at
    an import root, a folder that is no package itself: inside jax/ (a package), jax/numpy/ is `jax.numpy`, and
    `import numpy` is NumPy's, not it."""
    parts = file.relative.split("/")
    stem = parts[-1].rsplit(".", 1)[0]
    is_folder = file.language.grammar == "go" or stem in _FOLDER_MODULES.get(file.family, frozenset())
    parts = parts[:-1] if is_folder else parts[:-1] + [stem]
    if not parts:
        return ("",)  # the workspace folder is itself a package: `from . import x` at its top, `import pkg` in it
    starts = range(len(parts))
    if file.language.grammar == "python":
        root = file.path.parents[file.relative.count("/")]
        starts = [start for start in starts if start == 0 or not is_package(root.joinpath(*parts[:start]))]
    return tuple("/".join(parts[start:]) for start in starts)


class WorkspaceIndex:
    """Outlines keyed by path; mutated only on the event loop (the background build hands over whole files)."""

    def __init__(self, folders: Sequence[Path]) -> None:
        self.folders = tuple(folder.resolve() for folder in folders)
        self.files: dict[Path, IndexedFile] = {}
        self._by_name: dict[str, set[Path]] = {}
        self._by_module: dict[str, set[Path]] = {}
        # Lookups the sources remember (by path and name, never holding an outline) until a file's exports change.
        self.memo: dict[Any, Any] = {}
        self._attribute_files: dict[str, Counter[str]] = {}  # module key -> name -> files using `module.name`
        self._folder_names = frozenset(folder.name for folder in self.folders)
        self._folder_of: dict[Path, Path | None] = {}
        self._keys_of: dict[Path, tuple[str, ...]] = {}  # a file's module keys, as they were when it was added
        self._is_package: dict[Path, bool] = {}

    def folder_of(self, path: Path) -> Path | None:
        """The workspace folder holding `path` (symlinks resolved), or None: such files are never read.
        Remembered: resolving a path costs a system call per part, and every request asks."""
        if path not in self._folder_of:
            self._folder_of[path] = next((folder for folder in self.folders if is_inside(path, folder)), None)
        return self._folder_of[path]

    def relative(self, path: Path) -> str | None:
        folder = self.folder_of(path)
        return path.resolve().relative_to(folder).as_posix() if folder is not None else None

    def is_package(self, folder: Path) -> bool:
        """Whether a folder holds an __init__.py (or a stub of one); remembered, as every file below asks."""
        if folder not in self._is_package:
            self._is_package[folder] = any((folder / name).is_file() for name in ("__init__.py", "__init__.pyi"))
        return self._is_package[folder]

    def add(self, file: IndexedFile) -> None:
        old = self.files.get(file.path)
        self.remove(file.path, keep_memo=old is not None and old.exports == file.exports)
        self.files[file.path] = file
        if file.path.name in ("__init__.py", "__init__.pyi"):  # created since its folder was asked about
            self._is_package[file.path.parent] = True
        for definition in file.outline.definitions:
            self._by_name.setdefault(definition.name, set()).add(file.path)
        self._keys_of[file.path] = _module_keys(file, self.is_package)
        for key in self._keys_of[file.path]:
            self._by_module.setdefault(key, set()).add(file.path)
        for module, names in file.outline.module_attributes.items():
            self._attribute_files.setdefault(self._module_key(file, module), Counter()).update(names)

    def remove(self, path: Path, keep_memo: bool = False) -> None:
        if not keep_memo:
            self.memo.clear()
        old = self.files.pop(path, None)
        if old is None:
            return
        for definition in old.outline.definitions:
            _discard(self._by_name, definition.name, path)
        for key in self._keys_of.pop(path, ()):
            _discard(self._by_module, key, path)
        for module, names in old.outline.module_attributes.items():
            key = self._module_key(old, module)
            counts = self._attribute_files[key]
            counts.subtract(names)
            for name in names:
                if counts[name] <= 0:
                    del counts[name]
            if not counts:
                del self._attribute_files[key]

    def get(self, path: Path) -> IndexedFile | None:
        return self.files.get(path)

    def definitions_named(self, name: str, family: str) -> Iterator[tuple[IndexedFile, Definition]]:
        for path in sorted(self._by_name.get(name, ())):
            file = self.files[path]
            if file.family == family:
                yield from ((file, d) for d in file.named(name))

    def num_files_defining(self, name: str) -> int:
        return len(self._by_name.get(name, ()))

    def popular_attributes(self, importer: IndexedFile, module: str, count: int) -> list[tuple[str, int]]:
        """The `count` names of `module` that the most other files use as `alias.name`, with those numbers of
        files. The importer's own uses are left out: what the user types in it must not change its prompt."""
        counts = self._attribute_files.get(self._module_key(importer, module))
        if not counts:
            return []
        own = importer.outline.module_attributes.get(module, frozenset())
        others = ((name, num_files - (name in own)) for name, num_files in counts.items())
        return [item for item in heapq.nlargest(count, others, key=lambda item: (item[1], item[0])) if item[1] > 0]

    def module_files(self, importer: IndexedFile, module: str) -> list[IndexedFile]:
        """The workspace files an import's module names, most specific first; [] for a package from outside.
        Remembered: a request asks for the same few modules once per name it resolves."""
        memo_key = ("module", importer.path, module)
        if memo_key not in self.memo:
            self.memo[memo_key] = self._module_paths(importer, module)
        return [self.files[path] for path in self.memo[memo_key]]

    def _module_paths(self, importer: IndexedFile, module: str) -> list[Path]:
        key = self._module_key(importer, module)
        paths = self._by_module.get(key, set())
        if not paths and not module.startswith("."):
            # The workspace folder may sit inside the import path's root: a Go module path, or a Python
            # package opened as the folder itself (`import pkg.mod` from inside pkg/). Its longest tail decides;
            # the package itself (`import pkg` inside pkg/) is the folder's own __init__.
            parts = key.split("/")
            tails = ["/".join(parts[start:]) for start in range(1, len(parts))]
            if parts[0] in self._folder_names:
                tails.append("")
            paths = next((self._by_module[tail] for tail in tails if tail in self._by_module), set())
        return [path for path in sorted(paths) if self.files[path].family == importer.family]

    def _module_key(self, importer: IndexedFile, module: str) -> str:
        here = posixpath.dirname(importer.relative)
        grammar = importer.language.grammar
        if grammar == "python":
            dots = len(module) - len(module.lstrip("."))
            path = module.lstrip(".").replace(".", "/")
            if dots == 0:
                return path
            base = here
            for _ in range(dots - 1):
                base = posixpath.dirname(base)
            return posixpath.normpath(posixpath.join(base, path)) if path else base
        if grammar == "rust":
            parts = module.split("::")
            while parts and parts[0] in ("crate", "self", "super"):
                parts.pop(0)
            return "/".join(parts)
        if module.startswith("."):  # JS / TS relative specifier, with or without its extension
            resolved = posixpath.normpath(posixpath.join(here, module))
            stem = next((resolved.removesuffix(ext) for ext in _JS_EXTENSIONS if resolved.endswith(ext)), resolved)
            # `./dir/index.js` (ES modules write the file out) names the folder's index, keyed by its folder
            folder, _, last = stem.rpartition("/")
            return folder if last in _FOLDER_MODULES["js"] else stem
        return module.lstrip("@~/")

    def imports_of(self, path: Path) -> tuple[Import, ...]:
        file = self.files.get(path)
        return file.outline.imports if file else ()

    def __len__(self) -> int:
        return len(self.files)


def _discard(table: dict[str, set[Path]], key: str, path: Path) -> None:
    paths = table.get(key)
    if paths is not None:
        paths.discard(path)
        if not paths:
            del table[key]


def build_batch(paths: Iterable[Path], folder: Path, max_bytes: int) -> list[IndexedFile]:
    """Outlines of `paths` (run off the event loop); refused files are left out."""
    files = []
    for path in paths:
        result = index_file(path, folder, max_bytes)
        if isinstance(result, IndexedFile):
            files.append(result)
    return files
