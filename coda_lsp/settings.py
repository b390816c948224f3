"""Settings for section "coda": typed defaults, merged as defaults < initializationOptions < workspace/configuration."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from coda_engine.params import ALGORITHMS, REFRESH_RULES, Algorithm, RefreshRule


@dataclass(frozen=True)
class GenerationSettings:
    """The engine's slice: how one infill is sampled."""

    max_tokens: int = 64           # tokens in a multi-line span; the span is an upper bound (pad is dropped)
    single_line_tokens: int = 24   # tokens in a single-line span: one line rarely needs more
    steps: int | None = None       # denoising steps; None = the engine's fast default (exact: one token per step)
    alg: Algorithm = "entropy"     # reveal order (CoDA's); the fast path adds threshold reveals; "origin" needs exact
    temperature: float = 0.0       # 0 = greedy, so identical contexts give identical (cacheable) answers
    threshold: float | None = None  # alg "threshold": reveal every position at least this confident (None: 0.9)
    exact: bool = False            # CoDA's reference loop: no cache, one block (slow; for checking the fast path)
    block_size: int | None = None  # fast path: tokens decoded together over the cache; None = the engine's (32)
    cache_refresh: RefreshRule = "none"  # fast path: when the whole canvas is recomputed (block, steps, revealed)
    cache_reuse: int = 8           # fast path: requests in a row that start from the previous one's cache; 0: none
    num_candidates: int | None = None  # items an explicit (Invoked) request returns to cycle through; None: 3 on a
    #                                    GPU, 1 on the CPU, where each costs about one more infill (pipeline)
    candidate_temperature: float = 0.8  # sampling temperature of the candidates after the first (greedy) one


@dataclass(frozen=True)
class ContextSettings:
    """The context builder's slice: how much text around the cursor the model sees."""

    context_tokens: int = 1024     # prefix + suffix budget, measured with the model's tokenizer
    suffix_share: float = 0.25     # the suffix's guaranteed part of the budget; unused budget flows to the other side


@dataclass(frozen=True)
class TriggerSettings:
    """The trigger's and scheduler's slice: when to ask the model at all."""

    debounce_ms: int = 50          # ms an automatic request waits for a newer one before decoding (warm meanwhile)
    prefetch_next: bool = True     # work ahead: after a completion is shown, compute the one that follows accepting it
    warm_on_focus: bool = True     # work ahead: compute a focused cursor's canvas, so its first keystroke is not cold
    languages: tuple[str, ...] = ("python", "javascript", "javascriptreact", "typescript", "typescriptreact",
                                  "go", "rust")


CrossFileFormat = Literal["comment", "qwen"]
CROSS_FILE_FORMATS: tuple[str, ...] = ("comment", "qwen")


@dataclass(frozen=True)
class CrossFileSettings:
    """Cross-file context's slice: the workspace index and the snippets put before the prefix."""

    enabled: bool = True           # off: no index, no snippets, prompts exactly as without the feature
    share: float = 0.25            # the snippets' part of contextTokens; what they leave goes to the prefix
    format: CrossFileFormat = "comment"  # "comment": a path comment heads each snippet; "qwen": <|file_sep|> path
    # Tokens each source may use before the lower ones had theirs, filled in priority order within the share;
    # afterwards the sources, again in order, may use what the others left. 0 turns a source off.
    definition_tokens: int = 64    # (a) definitions of names used near the cursor, from other files
    import_tokens: int = 128       # (b) signatures of the names the file imports, by how near and often they are used
    edit_tokens: int = 64          # (c) ranges edited recently in other files
    similar_tokens: int = 128      # (d) windows of open documents similar to the code before the cursor
    extra_tokens: int = 128        # (e) input_extra chunks of an HTTP request
    max_files: int = 5000          # files read per workspace folder (in path order); past it a message says so
    max_file_kb: int = 512         # larger files are not indexed (generated code, data)
    log_prompts: bool = False      # log every prompt's parts (snippet paths, lines, scores, tokens) at info


@dataclass(frozen=True)
class Settings:
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    context: ContextSettings = field(default_factory=ContextSettings)
    trigger: TriggerSettings = field(default_factory=TriggerSettings)
    cross_file: CrossFileSettings = field(default_factory=CrossFileSettings)

    def merged(self, values: Any) -> tuple[Settings, list[str]]:
        """These settings overridden by a client's `coda` object, and one message per value that was ignored
        (unknown key, wrong type, out of range), so a typo is reported instead of silently doing nothing."""
        if values is None:
            return self, []
        if not isinstance(values, Mapping):
            return self, [f"coda settings must be an object, got {type(values).__name__}"]
        settings, problems = self, []
        for key, value in values.items():
            if key not in _KEYS:
                problems.append(f"unknown setting coda.{key}")
                continue
            slice_name, field_name, check = _KEYS[key]
            try:
                checked = check(value)
            except (TypeError, ValueError) as exc:
                problems.append(f"coda.{key}: {exc}")
                continue
            settings = replace(settings, **{slice_name: replace(getattr(settings, slice_name),
                                                                **{field_name: checked})})
        return settings, problems


def _int_in(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an integer, got {value!r}")
        if not low <= value <= high:
            raise ValueError(f"{value} is outside [{low}, {high}]")
        return value
    return check


def _float_in(low: float, high: float) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"expected a number, got {value!r}")
        if not low <= value <= high:
            raise ValueError(f"{value} is outside [{low}, {high}]")
        return float(value)
    return check


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else check(value)


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return value
    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value


def _languages(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TypeError(f"expected a list of language ids, got {value!r}")
    return tuple(value)


# Client key -> (slice, field, validator). 512 tokens and 32k context are far above what an editor needs and
# stop a typo from asking the engine for a minute of work.
_KEYS: dict[str, tuple[str, str, Callable[[Any], Any]]] = {
    "maxTokens": ("generation", "max_tokens", _int_in(1, 512)),
    "singleLineTokens": ("generation", "single_line_tokens", _int_in(1, 512)),
    "steps": ("generation", "steps", _optional(_int_in(1, 512))),
    "alg": ("generation", "alg", _one_of(ALGORITHMS)),
    "temperature": ("generation", "temperature", _float_in(0.0, 5.0)),
    "threshold": ("generation", "threshold", _optional(_float_in(0.0, 1.0))),
    "exact": ("generation", "exact", _bool),
    "blockSize": ("generation", "block_size", _optional(_int_in(1, 512))),
    "cacheRefresh": ("generation", "cache_refresh", _one_of(REFRESH_RULES)),
    "cacheReuse": ("generation", "cache_reuse", _int_in(0, 64)),
    "invokedCandidates": ("generation", "num_candidates", _optional(_int_in(1, 8))),
    "candidateTemperature": ("generation", "candidate_temperature", _float_in(0.0, 5.0)),
    "contextTokens": ("context", "context_tokens", _int_in(16, 32768)),
    "suffixShare": ("context", "suffix_share", _float_in(0.05, 0.95)),
    "debounceMs": ("trigger", "debounce_ms", _int_in(0, 5000)),
    "prefetchNext": ("trigger", "prefetch_next", _bool),
    "warmOnFocus": ("trigger", "warm_on_focus", _bool),
    "enabledLanguages": ("trigger", "languages", _languages),
    "crossFile": ("cross_file", "enabled", _bool),
    "crossFileShare": ("cross_file", "share", _float_in(0.0, 0.9)),
    "crossFileFormat": ("cross_file", "format", _one_of(CROSS_FILE_FORMATS)),
    "crossFileDefinitionTokens": ("cross_file", "definition_tokens", _int_in(0, 8192)),
    "crossFileImportTokens": ("cross_file", "import_tokens", _int_in(0, 8192)),
    "crossFileEditTokens": ("cross_file", "edit_tokens", _int_in(0, 8192)),
    "crossFileSimilarTokens": ("cross_file", "similar_tokens", _int_in(0, 8192)),
    "crossFileExtraTokens": ("cross_file", "extra_tokens", _int_in(0, 8192)),
    "crossFileMaxFiles": ("cross_file", "max_files", _int_in(0, 100_000)),
    "crossFileMaxFileKb": ("cross_file", "max_file_kb", _int_in(1, 16_384)),
    "logPrompts": ("cross_file", "log_prompts", _bool),
}
