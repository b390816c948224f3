"""Golden tests: every TOML case in golden/<filter>/ through that filter (golden/pipeline/ through all)."""

from __future__ import annotations

import pytest

from coda_lsp.filters import FILTERS, Filter, run_filters
from coda_lsp.filters.dedent_scope import scope_is_complete, stop_at_dedent
from coda_lsp.filters.indentation import normalize_indentation
from coda_lsp.filters.parse_clean import keep_parse_clean
from coda_lsp.filters.repeated_lines import drop_repeated_lines
from coda_lsp.filters.suffix_overlap import cut_suffix_overlap
from tests.server.golden_cases import GOLDEN_DIR, GoldenCase, load_cases

FOLDERS: dict[str, tuple[Filter, ...]] = {
    "suffix_overlap": (cut_suffix_overlap,),
    "indentation": (normalize_indentation,),
    "dedent_scope": (stop_at_dedent,),
    "repeated_lines": (drop_repeated_lines,),
    "parse_clean": (keep_parse_clean,),
    "pipeline": FILTERS,
}
CASES = [case for folder in FOLDERS for case in load_cases(folder)]


def test_every_folder_has_cases_and_a_filter() -> None:
    folders = {path.name for path in GOLDEN_DIR.iterdir() if path.is_dir()}
    assert folders == set(FOLDERS)
    assert all(load_cases(folder) for folder in FOLDERS)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_golden(case: GoldenCase, request: pytest.FixtureRequest) -> None:
    if case.xfail:
        request.applymarker(pytest.mark.xfail(reason=case.xfail, strict=True))
    got = run_filters(case.raw, case.ctx, FOLDERS[case.path.parent.name])
    assert got == case.expected


@pytest.mark.parametrize("case", [c for c in CASES if not c.xfail], ids=[c.id for c in CASES if not c.xfail])
def test_a_complete_scope_already_has_the_final_answer(case: GoldenCase) -> None:
    """The engine stops writing once scope_is_complete holds for the text so far: whatever it would have
    written after that point must not change what the filters return."""
    final = run_filters(case.raw, case.ctx)
    for end in range(len(case.raw) + 1):
        if scope_is_complete(case.raw[:end], case.ctx):
            assert run_filters(case.raw[:end], case.ctx) == final, case.raw[:end]


def test_scope_is_complete_stops_early_on_lines_and_blocks() -> None:
    early = {case.path.stem for case in CASES
             if any(scope_is_complete(case.raw[:end], case.ctx) for end in range(len(case.raw)))}
    assert {"single_line_cut", "stop_at_dedent", "js_own_closing_brace"} <= early
    body = next(case for case in CASES if case.path.stem == "blank_line_in_body")
    first = next(end for end in range(len(body.raw) + 1) if scope_is_complete(body.raw[:end], body.ctx))
    # The blank line and the body line do not end the block; the first character of the dedented line does.
    assert body.raw[:first].endswith("\nw")
