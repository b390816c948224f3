"""vscode-client/package.json declares every server setting of coda_lsp.settings with the server's own type,
default and range, so a setting changed on one side and not the other fails here with what to update."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from coda_lsp import settings as server_settings
from coda_lsp.settings import _KEYS, Settings

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_JSON = ROOT / "vscode-client" / "package.json"
# The extension's own settings (vscode-client/src/settings.ts CLIENT_SETTINGS): how to start the server, not its
# settings section.
CLIENT_SETTINGS = {"server.command", "server.python", "server.tcp", "remote.url", "remote.apiKeyFile", "model",
                   "device", "dtype", "inlineCompletions.enabled", "trace.server"}
FIX = "update vscode-client/package.json contributes.configuration to match " \
      "coda_lsp/settings.py"


def _declared() -> dict[str, dict[str, Any]]:
    properties = json.loads(PACKAGE_JSON.read_text())["contributes"]["configuration"]["properties"]
    return {key.removeprefix("coda."): schema for key, schema in properties.items()}


def _default(slice_name: str, field_name: str) -> Any:
    """The dataclass default, as JSON would hold it (tuples become lists)."""
    value = getattr(getattr(Settings(), slice_name), field_name)
    return list(value) if isinstance(value, tuple) else value


def test_the_extension_declares_exactly_the_server_settings_plus_its_own() -> None:
    declared = set(_declared())
    missing = sorted(set(_KEYS) - declared)
    unknown = sorted(declared - set(_KEYS) - CLIENT_SETTINGS)
    assert not missing, f"server settings missing from package.json: {missing}; {FIX}"
    assert not unknown, f"package.json declares coda.{unknown} that the server does not know; {FIX} " \
                        "(or add it to CLIENT_SETTINGS here and in vscode-client/src/settings.ts)"


def test_the_readme_lists_every_server_setting() -> None:
    section = (ROOT / "README.md").read_text().split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    missing = [key for key in _KEYS if f"`{key}`" not in section]
    assert not missing, f"README.md's Settings section does not list {missing} (python -m tests.test_docs)"


@pytest.mark.parametrize("key", sorted(_KEYS))
def test_type_default_and_range_match_the_server(key: str) -> None:
    schema = _declared().get(key)
    assert schema is not None, f"coda.{key} is missing from package.json; {FIX}"
    slice_name, field_name, check = _KEYS[key]
    default = _default(slice_name, field_name)
    where = f"coda.{key} in package.json"
    assert schema.get("default") == default, f"{where} has default {schema.get('default')!r}, the server " \
                                             f"{default!r}; {FIX}"
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    nullable = check(None) is None if _accepts(check, None) else False
    assert ("null" in types) == nullable, f"{where}: null is {'' if nullable else 'not '}accepted by the server; {FIX}"
    [kind] = [kind for kind in types if kind != "null"]
    if kind in ("integer", "number"):
        low, high = schema.get("minimum"), schema.get("maximum")
        assert low is not None and high is not None, f"{where} needs minimum and maximum; {FIX}"
        step = 1 if kind == "integer" else 1e-6
        assert _accepts(check, low) and _accepts(check, high), f"{where}: [{low}, {high}] is wider than the server's; {FIX}"
        assert not _accepts(check, low - step) and not _accepts(check, high + step), \
            f"{where}: [{low}, {high}] is narrower than the server's; {FIX}"
        assert _accepts(check, low + 0.5) == (kind == "number"), f"{where}: type {kind} disagrees with the server; {FIX}"
    elif kind == "string":
        choices = _choices(check, default)
        assert schema.get("enum") == list(choices), f"{where}: enum {schema.get('enum')} is not the server's " \
                                                    f"{list(choices)}; {FIX}"
    elif kind == "boolean":
        assert _accepts(check, True) and _accepts(check, False) and not _accepts(check, 1), \
            f"{where}: the server does not check for true / false; {FIX}"
    elif kind == "array":
        assert schema["items"] == {"type": "string"} and _accepts(check, ["python"]) and not _accepts(check, [1])
    else:
        assert _accepts(check, default), f"{where}: type {kind} is not what the server checks for; {FIX}"


def _choices(check: Any, default: str) -> tuple[str, ...]:
    """The module-level tuple of names (ALGS, REFRESH_RULES, ...) the validator accepts exactly."""
    tuples = [value for value in vars(server_settings).values() if isinstance(value, tuple) and default in value
              and all(isinstance(item, str) and _accepts(check, item) for item in value)]
    assert len(tuples) == 1 and not _accepts(check, "no-such-choice"), f"no single choice list for {default!r}"
    return tuples[0]


def _accepts(check: Any, value: Any) -> bool:
    try:
        check(value)
    except (TypeError, ValueError):
        return False
    return True
