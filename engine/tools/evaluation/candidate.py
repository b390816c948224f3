"""From the model's raw infill text to a scored candidate: truncation, program assembly, exact match.

Truncation is one rule per task, chosen from what the task's canonical middle looks like:

- single-line: the middle is exactly one whole line, so keep the first generated line.
- multi-line: the middle is whole lines; drop a tail that repeats the start of the suffix (a fixed-length
  span longer than the middle tends to end by writing the suffix's first lines again), end on a newline.
- random-span-light: the middle starts and ends mid-line, so there is no structural cue; keep the text.
- humaneval: no suffix, so cut at the first new top-level statement (the stop sequences of the
  HumanEval paper, Chen et al. 2021) and end on a newline.
"""

from __future__ import annotations

from itertools import dropwhile

from .tasks import Problem, TaskName

# Chen et al. 2021, "Evaluating Large Language Models Trained on Code": the Codex HumanEval stop sequences.
HUMANEVAL_STOP_SEQUENCES = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")


def truncate_completion(task: TaskName, text: str, suffix: str) -> str:
    """Cut the raw infill `text` to the part that belongs between the prefix and `suffix`."""
    if task == "single-line":
        return text.split("\n", 1)[0] + "\n"
    if task == "multi-line":
        return _ensure_final_newline(_drop_suffix_echo(text, suffix))
    if task == "humaneval":
        return _ensure_final_newline(_cut_at_first(text, HUMANEVAL_STOP_SEQUENCES))
    return text


def build_program(problem: Problem, completion: str) -> str:
    """The file the sandbox runs: the filled-in function, its tests, and the call that runs them."""
    return f"{problem.prefix}{completion}{problem.suffix}\n{problem.test}\n\ncheck({problem.entry_point})\n"


def is_exact_match(problem: Problem, completion: str) -> bool:
    """Equal to the canonical middle up to leading and trailing whitespace."""
    return completion.strip() == problem.canonical_middle.strip()


def _drop_suffix_echo(text: str, suffix: str) -> str:
    """Drop the longest tail of whole lines that repeats the suffix's first non-blank lines.

    The tail's last line may be cut short (the span ran out mid-line). Lines compare without trailing
    whitespace only, so indentation stays significant: on the multi-line task no canonical middle loses a line.
    """
    lines = text.splitlines(keepends=True)
    suffix_lines = list(dropwhile(lambda line: not line, (line.rstrip() for line in suffix.splitlines())))
    for start in range(len(lines)):
        tail = [line.rstrip() for line in lines[start:]]
        num_lines = len(tail)
        if (tail[0] and num_lines <= len(suffix_lines) and tail[:-1] == suffix_lines[:num_lines - 1]
                and suffix_lines[num_lines - 1].startswith(tail[-1])):
            return "".join(lines[:start])
    return text


def _cut_at_first(text: str, stop_sequences: tuple[str, ...]) -> str:
    cut = min((index for stop in stop_sequences if (index := text.find(stop)) != -1), default=len(text))
    return text[:cut]


def _ensure_final_newline(text: str) -> str:
    # The suffix (or the test code, for plain HumanEval) starts a new line; a body without one would merge into it.
    return text if text.endswith("\n") else text + "\n"
