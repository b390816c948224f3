"""settings: defaults < initializationOptions < workspace/configuration, typed and validated per key."""

from __future__ import annotations

import pytest

from coda_lsp.settings import Settings


def test_defaults_overridden_in_order() -> None:
    from_init, problems = Settings().merged({"maxTokens": 32, "debounceMs": 10})
    assert problems == []
    pulled, problems = from_init.merged({"maxTokens": 16, "suffixShare": 0.5, "enabledLanguages": ["go"]})
    assert problems == []
    assert pulled.generation.max_tokens == 16
    assert pulled.trigger.debounce_ms == 10
    assert pulled.context.suffix_share == 0.5
    assert pulled.trigger.languages == ("go",)


@pytest.mark.parametrize(("values", "problem"), [
    ({"maxTokens": "many"}, "coda.maxTokens: expected an integer"),
    ({"maxTokens": 0}, "coda.maxTokens: 0 is outside"),
    ({"maxTokens": True}, "coda.maxTokens: expected an integer"),
    ({"alg": "beam"}, "coda.alg: 'beam' is not one of"),
    ({"temperatur": 1.0}, "unknown setting coda.temperatur"),
    ({"enabledLanguages": "python"}, "coda.enabledLanguages: expected a list"),
    ({"crossFileImportTokens": -1}, "coda.crossFileImportTokens: -1 is outside [0, 8192]"),
    ([1, 2], "coda settings must be an object"),
])
def test_bad_values_are_reported_and_ignored(values: object, problem: str) -> None:
    settings, problems = Settings().merged(values)
    assert settings == Settings()
    assert len(problems) == 1 and problems[0].startswith(problem)


def test_nullable_values() -> None:
    settings, problems = Settings().merged({"steps": 8, "threshold": 0.9})
    settings, problems = settings.merged({"steps": None, "threshold": None})
    assert problems == [] and settings.generation.steps is None and settings.generation.threshold is None


def test_none_changes_nothing() -> None:
    assert Settings().merged(None) == (Settings(), [])


def test_the_imported_names_source_has_its_own_budget() -> None:
    settings, problems = Settings().merged({"crossFileImportTokens": 0})
    assert problems == [] and settings.cross_file.import_tokens == 0  # 0 turns the source off
    assert Settings().cross_file.import_tokens > 0
