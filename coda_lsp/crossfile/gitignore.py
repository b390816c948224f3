"""A .gitignore matcher for folders that are not git repositories (git's own rules are used where it is one).

Follows gitignore(5): blank lines and `#` comments are skipped, `!` re-includes, a trailing `/` matches
directories only, a pattern with a `/` before its end is anchored to its .gitignore's folder, `**` spans
folders, and the last matching pattern wins."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern[str]
    is_negated: bool
    is_dir_only: bool


def _compile(glob: str, is_anchored: bool) -> re.Pattern[str]:
    out, index = [], 0
    while index < len(glob):
        char = glob[index]
        if glob.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
            continue
        if glob.startswith("**", index):
            out.append(".*")
            index += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = glob.find("]", index + 1)
            if end == -1:
                out.append(re.escape(char))
            else:
                body = glob[index + 1:end].replace("\\", "\\\\")
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                index = end
        elif char == "\\" and index + 1 < len(glob):
            index += 1
            out.append(re.escape(glob[index]))
        else:
            out.append(re.escape(char))
        index += 1
    head = "" if is_anchored else "(?:.*/)?"
    return re.compile(head + "".join(out) + "(?:/.*)?$")


class GitIgnore:
    """The rules of the .gitignore files from a root folder down to the folder being walked."""

    def __init__(self, rules: tuple[tuple[str, _Rule], ...] = ()) -> None:
        self._rules = rules  # (folder relative to the root, with a trailing "/" or "", rule)

    def with_file(self, folder: str, path: Path) -> GitIgnore:
        """These rules plus those of `path`, the .gitignore in `folder` (relative to the root)."""
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return self
        rules = list(self._rules)
        base = f"{folder}/" if folder else ""
        for line in lines:
            line = line.rstrip()
            if not line or line.startswith("#"):
                continue
            is_negated = line.startswith("!")
            line = line[1:] if is_negated else line.removeprefix("\\")
            is_dir_only = line.endswith("/")
            line = line.rstrip("/")
            if not line:
                continue
            is_anchored = "/" in line
            rules.append((base, _Rule(_compile(line.lstrip("/"), is_anchored), is_negated, is_dir_only)))
        return GitIgnore(tuple(rules))

    def is_ignored(self, relative: str, is_dir: bool) -> bool:
        """Whether `relative` (to the root, '/'-separated) is ignored; the last matching rule decides."""
        ignored = False
        for base, rule in self._rules:
            if not relative.startswith(base):
                continue
            if rule.is_dir_only and not is_dir:
                continue
            if rule.pattern.match(relative[len(base):]):
                ignored = not rule.is_negated
        return ignored
