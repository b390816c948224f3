"""The default model's corpus: Python source every machine with the project installed has, defined by this recipe.

Sources are CPython's standard library (PSF licence) and a fixed list of permissively licensed packages the
project installs. Files are filtered (tests, generated data, huge lines), deduplicated by normalised content,
decontaminated against HumanEval, and split into train / validation by a hash of their path, so the same
machine always gives the same corpus, and the manifest records what a different machine would differ in.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import json
import platform
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from coda_training.errors import TrainingError

# Packages whose Python sources may be trained on, with the licence each declares (checked at run time).
PERMISSIVE_PACKAGES: dict[str, str] = {
    "numpy": "BSD",
    "jax": "Apache",
    "flax": "Apache",
    "optax": "Apache",
    "pygls": "Apache",
    "lsprotocol": "MIT",
}
# Folders never taken: test suites (much boilerplate, some deliberately broken code) and vendored bundles.
SKIPPED_DIRS = frozenset({"test", "tests", "idle_test", "testing", "site-packages", "dist-packages", "__pycache__",
                          "_bundled", "turtledemo", "_vendor"})
MAX_FILE_BYTES = 200_000  # larger files are generated tables or data dumps (pydoc_data/topics.py, unicode tables)
MAX_LINE_CHARS = 400  # a longer line marks generated or minified code
MIN_FILE_BYTES = 200
VALIDATION_PERCENT = 2
# A HumanEval line this long is specific enough that finding it in a file means the file carries the problem.
MIN_CONTAMINATION_LINE = 30


@dataclass
class CorpusStats:
    """Counts the manifest reports: what was found, what each filter removed, what was written."""

    found: int = 0
    skipped_size_or_lines: int = 0
    duplicates: int = 0
    contaminated: int = 0
    train_files: int = 0
    valid_files: int = 0
    train_bytes: int = 0
    valid_bytes: int = 0
    contaminated_paths: list[str] = field(default_factory=list)


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def package_root(name: str) -> tuple[Path, str, str]:
    """(source folder, version, licence) of an installed package on the permissive list."""
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        raise TrainingError(f"corpus package {name!r} is not installed (pip install -e '.[train]')") from None
    licence = " ".join(filter(None, [dist.metadata.get("License-Expression"), dist.metadata.get("License"),
                                     *dist.metadata.get_all("Classifier", [])]))
    if PERMISSIVE_PACKAGES[name].lower() not in licence.lower():
        raise TrainingError(f"corpus package {name!r} does not declare a {PERMISSIVE_PACKAGES[name]} licence")
    root = Path(str(dist.locate_file(name)))
    if not root.is_dir():
        raise TrainingError(f"corpus package {name!r} has no source folder at {root}")
    return root, dist.version, PERMISSIVE_PACKAGES[name]


def python_files(root: Path) -> Iterator[Path]:
    """Sorted .py files under `root`, outside SKIPPED_DIRS."""
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).parts[:-1]
        if not SKIPPED_DIRS.intersection(relative) and path.is_file():
            yield path


def is_trainable(text: str) -> bool:
    size = len(text.encode("utf-8"))
    if not MIN_FILE_BYTES <= size <= MAX_FILE_BYTES:
        return False
    return max(map(len, text.splitlines()), default=0) <= MAX_LINE_CHARS


def content_key(text: str) -> str:
    """Hash of the text with trailing spaces and blank lines removed: catches copies that differ only there."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def humaneval_lines(humaneval_dir: Path) -> frozenset[str]:
    """Distinctive stripped lines of every HumanEval prompt and canonical solution."""
    path = humaneval_dir / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise TrainingError(f"HumanEval data not found at {path}: it is needed to keep the benchmark out of "
                            "the corpus (pass --humaneval-dir)")
    lines = set()
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for record in map(json.loads, f):
            for line in (record["prompt"] + record["canonical_solution"]).splitlines():
                stripped = line.strip()
                if len(stripped) >= MIN_CONTAMINATION_LINE:
                    lines.add(stripped)
    return frozenset(lines)


def is_contaminated(text: str, banned: frozenset[str]) -> bool:
    return any(line.strip() in banned for line in text.splitlines())


def is_validation(relative: str) -> bool:
    digest = hashlib.sha256(relative.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "little") % 100 < VALIDATION_PERCENT


def sources(packages: list[str]) -> list[tuple[str, Path, dict[str, str]]]:
    """(name, root, description) for the standard library and each package, in a fixed order."""
    found = [("stdlib", stdlib_root(), {"licence": "PSF", "version": platform.python_version()})]
    for name in packages:
        if name not in PERMISSIVE_PACKAGES:
            raise TrainingError(f"package {name!r} is not on the permissive list ({', '.join(PERMISSIVE_PACKAGES)})")
        root, version, licence = package_root(name)
        found.append((name, root, {"licence": licence, "version": version}))
    return found


def build_corpus(out: Path, humaneval_dir: Path, packages: list[str] | None = None) -> CorpusStats:
    """Write out/train/<source>/..., out/valid/<source>/... and out/manifest.json; `out` must not exist."""
    if out.exists():
        raise TrainingError(f"{out} already exists; the corpus is written to a new folder")
    packages = list(PERMISSIVE_PACKAGES) if packages is None else packages
    banned = humaneval_lines(humaneval_dir)
    chosen_sources = sources(packages)
    stats, seen = CorpusStats(), set()
    tmp = out.with_name(out.name + ".partial")
    for name, root, _ in chosen_sources:
        for path in python_files(root):
            stats.found += 1
            text = path.read_text(encoding="utf-8", errors="replace")
            relative = f"{name}/{path.relative_to(root).as_posix()}"
            if not is_trainable(text):
                stats.skipped_size_or_lines += 1
                continue
            key = content_key(text)
            if key in seen:
                stats.duplicates += 1
                continue
            seen.add(key)
            if is_contaminated(text, banned):
                stats.contaminated += 1
                stats.contaminated_paths.append(relative)
                continue
            split = "valid" if is_validation(relative) else "train"
            target = tmp / split / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            size = len(text.encode("utf-8"))
            if split == "valid":
                stats.valid_files, stats.valid_bytes = stats.valid_files + 1, stats.valid_bytes + size
            else:
                stats.train_files, stats.train_bytes = stats.train_files + 1, stats.train_bytes + size
    manifest = {
        "recipe": "coda-default-corpus/1",
        "python": platform.python_version(),
        "sources": {name: {"root": str(root), **info} for name, root, info in chosen_sources},
        "filters": {"max_file_bytes": MAX_FILE_BYTES, "max_line_chars": MAX_LINE_CHARS,
                    "min_file_bytes": MIN_FILE_BYTES, "skipped_dirs": sorted(SKIPPED_DIRS),
                    "validation_percent": VALIDATION_PERCENT, "humaneval_min_line": MIN_CONTAMINATION_LINE},
        "stats": stats.__dict__,
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.rename(out)
    return stats
