"""Golden prompt assembly: every case in tests/server/golden_crossfile/ (exact snippet order, tokens, format),
plus the budget, stability and crossFile-off rules, with the real tokenizer's counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from coda_lsp.context import TokenCounter
from coda_lsp.crossfile.assemble import Layout, assemble
from coda_lsp.crossfile.snippets import Snippet
from coda_lsp.documents import Document
from tests.server.crossfile.golden_prompts import CURSOR, case_paths, load_case, load_workspace, summary

CASES = case_paths()


@pytest.fixture(scope="module")
def counter(reference_dir: Path) -> TokenCounter:
    from coda_engine.tokenizer import load_tokenizer

    return TokenCounter(load_tokenizer(reference_dir))


def test_there_is_a_golden_case_per_language_and_source() -> None:
    names = {path.stem for path in CASES}
    assert {"python_imports", "typescript_imports", "go_package", "rust_use", "sources_in_priority_order",
            "dedup_near_cursor", "input_extra", "python_budget_qwen", "python_reexport", "python_imported_names",
            "typescript_reexports", "go_imported_package", "rust_use_module"} <= names


@pytest.mark.parametrize("path", CASES, ids=[f"{p.stem}: {load_case(p)['description']}" for p in CASES])
def test_golden(path: Path, tmp_path: Path, counter: TokenCounter) -> None:
    case = load_case(path)
    prompt = load_workspace(case, tmp_path, counter).prompt()
    assert prompt.text == case["expected"]["text"]
    assert summary(prompt) == case["expected"]["snippets"]
    assert prompt.tokens == case["expected"]["tokens"] <= case["budget"]
    # the tokens charged are the text's own, line by line
    assert prompt.tokens == sum(counter(line) for line in prompt.text.splitlines(keepends=True))


def test_the_snippet_set_is_stable_while_typing_on_one_line(tmp_path: Path, counter: TokenCounter) -> None:
    workspace = load_workspace(load_case(path_of("python_imports")), tmp_path, counter)
    doc, offset = workspace.current, workspace.offset
    first = workspace.prompt()
    assert first.snippets
    typed = ""
    for char in "print(resize(Circle(1.0), 3))":
        typed += char
        text = doc.text[:offset] + typed + doc.text[offset:]
        later = workspace.prompt(Document(doc.uri, doc.language_id, doc.version + len(typed), text),
                                 offset + len(typed))
        assert later.text == first.text, typed


def test_a_snippet_that_does_not_fit_leaves_room_for_a_smaller_one() -> None:
    big = Snippet("definition", "a.py", 0, 9, 1.0, "\n".join(f"line_{i} = {i}" for i in range(10)), "#")
    small = Snippet("definition", "b.py", 0, 0, 0.5, "X = 1", "#")
    layout = Layout("comment", "main.py", "#", "ws")
    prompt = assemble({"definition": [big, small]}, {"definition": 100}, 30, layout, frozenset(),
                      lambda line: len(line.split()))
    assert [placed.snippet.path for placed in prompt.snippets] == ["b.py"]
    assert prompt.text == "# Path: b.py\nX = 1\n# Path: main.py\n"


def test_each_source_stays_within_its_own_budget_and_the_share() -> None:
    def snippet(kind: str, name: str, score: float) -> Snippet:
        return Snippet(kind, f"{name}.py", 0, 0, score, f"{name} = 1", "#")  # type: ignore[arg-type]

    candidates = {"definition": [snippet("definition", f"d{i}", 1 / (i + 1)) for i in range(5)],
                  "recentEdit": [snippet("recentEdit", f"e{i}", 1 / (i + 1)) for i in range(5)]}
    layout = Layout("comment", "main.py", "#", "ws")
    count = (lambda line: len(line.split()))  # "# Path: d0.py" = 3, "d0 = 1" = 3: 6 per snippet, 3 for the frame
    prompt = assemble(candidates, {"definition": 12, "recentEdit": 100}, 3 + 12 + 12, layout, frozenset(), count)
    # definitions get 12 (two snippets), edits the 12 left of the share; best of all (d0) last
    assert [p.snippet.path for p in prompt.snippets] == ["e1.py", "e0.py", "d1.py", "d0.py"]
    assert prompt.tokens == 27


def test_no_snippets_means_no_text(tmp_path: Path, counter: TokenCounter) -> None:
    case = load_case(path_of("python_imports"))
    case = {**case, "files": {"app/main.py": "x = 1\n" + CURSOR + "\n"}, "current": "app/main.py"}
    prompt = load_workspace(case, tmp_path, counter).prompt()
    assert (prompt.text, prompt.snippets, prompt.tokens) == ("", (), 0)


def path_of(stem: str) -> Path:
    return next(path for path in CASES if path.stem == stem)


def test_what_lower_sources_leave_goes_back_to_the_higher_ones() -> None:
    definitions = [Snippet("definition", f"d{i}.py", 0, 0, 1 / (i + 1), f"d{i} = 1", "#") for i in range(4)]
    layout = Layout("comment", "main.py", "#", "ws")
    count = (lambda line: len(line.split()))
    # no other source has candidates: after its own 12 tokens the definitions take the rest of the share
    prompt = assemble({"definition": definitions}, {"definition": 12, "similar": 100}, 3 + 24, layout,
                      frozenset(), count)
    assert [p.snippet.path for p in prompt.snippets] == ["d3.py", "d2.py", "d1.py", "d0.py"]
    # a source turned off stays off, even with tokens to spare
    off = assemble({"definition": definitions}, {"definition": 0}, 100, layout, frozenset(), count)
    assert off.snippets == ()


def test_what_the_sources_leave_goes_to_the_imported_names_first() -> None:
    definitions = [Snippet("definition", f"d{i}.py", 0, 0, 1 / (i + 1), f"d{i} = 1", "#") for i in range(3)]
    imported = [Snippet("import", f"i{i}.py", 0, 0, 1 / (i + 1), f"i{i} = 1", "#") for i in range(3)]
    layout = Layout("comment", "main.py", "#", "ws")
    # 6 tokens a snippet (header and line), 3 for the current file's header: one each, then one more, an import's
    prompt = assemble({"definition": definitions, "import": imported}, {"definition": 6, "import": 6},
                      3 + 18, layout, frozenset(), lambda line: len(line.split()))
    assert sorted(p.snippet.path for p in prompt.snippets) == ["d0.py", "i0.py", "i1.py"]


def test_snippets_of_one_file_share_its_header() -> None:
    layout = Layout("comment", "main.py", "#", "ws")
    snippets = [Snippet("definition", "lib.py", 10, 10, 1.0, "B = 2", "#"),
                Snippet("definition", "other.py", 0, 0, 0.7, "C = 3", "#"),
                Snippet("definition", "lib.py", 0, 0, 0.5, "A = 1", "#")]
    prompt = assemble({"definition": snippets}, {"definition": 100}, 100, layout, frozenset(),
                      lambda line: len(line.split()))
    assert prompt.text == "# Path: other.py\nC = 3\n# Path: lib.py\nA = 1\nB = 2\n# Path: main.py\n"
    assert [p.tokens for p in prompt.snippets] == [6, 3, 6]  # the second lib.py snippet pays no header
