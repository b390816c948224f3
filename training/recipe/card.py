"""The shipped model's card: what it is, the data, the recipe, the losses, and the harness scores if measured."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from coda_training.data.infill import LINE_SPAN_SHARE

STAGE_TITLES = {"pretrain": "pre-training", "midtrain": "mid-training (curriculum)", "sft": "infill SFT"}


# Logged points averaged at each end of a stage: one batch's t decides most of its loss, so single points are noise.
SMOOTHING = 5


def mean_nll(metrics: list[dict]) -> float:
    return sum(m["masked_token_nll"] for m in metrics) / len(metrics)


def stage_tokens(config: dict) -> int:
    return config["num_steps"] * config["data"]["batch_size"] * config["data"]["seq_len"]


def stage_rows(work: Path, configs: dict[str, dict]) -> list[str]:
    rows = []
    for stage, title in STAGE_TITLES.items():
        config = configs[stage]
        metrics = [json.loads(line) for line in (work / stage / "metrics.jsonl").read_text().splitlines()]
        first, last = mean_nll(metrics[:SMOOTHING]), mean_nll(metrics[-SMOOTHING:])
        tokens = stage_tokens(config)
        rows.append(f"| {title} | {config['num_steps']} | {tokens / 1e6:.2f} M | {config['optim']['name']} "
                    f"{config['optim']['learning_rate']:g} | {first:.3f} | {last:.3f} |")
    return rows


def model_shape(out: Path) -> str:
    config = json.loads((out / "config.json").read_text())
    return (f"{config['num_hidden_layers']} layers, hidden {config['hidden_size']}, MLP {config['intermediate_size']}, "
            f"{config['num_attention_heads']} heads ({config['num_key_value_heads']} KV) of {config['head_dim']}, "
            f"vocabulary {config['vocab_size']}")


def num_parameters(out: Path) -> float:
    from safetensors.numpy import load_file

    return sum(t.size for f in sorted(out.glob("*.safetensors")) for t in load_file(str(f)).values()) / 1e6


def empty_answers(report: Path) -> str:
    """How many scored answers were blank, from the JSON beside a Markdown report (a blank line can pass)."""
    details = report.with_name(report.name.replace("EVAL-", "eval-").replace(".md", ".json"))
    if not details.is_file():
        return ""
    problems = json.loads(details.read_text())["problems"]
    blank = [p for p in problems if not p["completion"].strip()]
    passed = sum(p["status"] == "passed" for p in blank)
    return f"\n\nBlank answers: {len(blank)} of {len(problems)} ({passed} of them passed)."


def write_card(work: Path, out: Path, held_out: dict[str, float] | None, infill: dict[str, int]) -> Path:
    """`infill`: the options the recipe tokenized the SFT rows with (holes per row, pad tail)."""
    configs = {stage: yaml.safe_load((work / stage / "config.yaml").read_text()) for stage in STAGE_TITLES}
    num_tokens = sum(stage_tokens(config) for config in configs.values())
    manifest = json.loads((work / "corpus" / "manifest.json").read_text())
    stats = manifest["stats"]
    sources = ", ".join(f"{name} {info['version']} ({info['licence']})" for name, info in manifest["sources"].items())
    reports = sorted(out.glob("EVAL-*.md"))
    scores = "\n\n".join(f"`{p.name}`:\n\n{p.read_text().strip()}{empty_answers(p)}" for p in reports) if reports \
        else "Not measured yet: `make default-model` runs the harness after training."
    loss_line = "" if held_out is None else (
        f"\nHeld-out loss (1/t-weighted, final curriculum noise): {held_out['loss']:.3f}; masked-token NLL "
        f"{held_out['masked_token_nll']:.3f}.\n")
    lines = [
        "# coda-tiny: the default model of coda-lsp",
        "",
        f"A CoDA-architecture masked-diffusion code model ({num_parameters(out):.1f} M parameters: {model_shape(out)}),",
        "trained from random weights by this project's own pipeline on CPU. It exists so that `coda-lsp` works",
        "out of the box; it is small, and it completes Python best.",
        "",
        "## Data",
        "",
        f"Python source from {sources}: {stats['train_files']} training files ({stats['train_bytes'] / 1e6:.1f} MB)",
        f"and {stats['valid_files']} held-out files, after dropping {stats['skipped_size_or_lines']} generated or",
        f"oversized files, {stats['duplicates']} duplicates and {stats['contaminated']} files sharing a line with",
        "HumanEval (nothing from HumanEval is trained on). Test suites and vendored code are excluded.",
        "",
        "## Recipe",
        "",
        "`make default-model` (= `python -m coda_training.recipe`, then the harness) reproduces this folder on",
        "2 CPU cores. Tokenizer: byte-level BPE trained on the corpus, CoDA's special tokens (`<|im_end|>` ends a",
        "span, `<|endoftext|>` pads after it, `<|mask|>` is the diffusion's absorbing state).",
        "",
        "| stage | steps | tokens | optimiser, peak lr | first masked NLL | last masked NLL |",
        "|---|---:|---:|---|---:|---:|",
        *stage_rows(work, configs),
        "",
        "Pre- and mid-training noise whole packed files (mid-training with CoDA's five-phase S1/S2/S3 curriculum);",
        f"infill SFT rows hold up to {infill['max_spans']} holes ({LINE_SPAN_SHARE:.0%} of them whole lines or the rest "
        f"of a line), each followed by a",
        f"pad tail of up to {infill['max_tail']} tokens, so the model learns to end a span early and the engine can "
        "over-allocate.",
        loss_line,
        "## Harness scores",
        "",
        scores,
        "",
        "## Limitations",
        "",
        f"About {num_tokens / 1e6:.0f} M training tokens on 2 CPU cores are far too few for useful code: the",
        "model has learned Python's surface (indentation, common names, brackets) but rarely writes a line that",
        "passes a test; its passes are lines the tests did not need (`if 1:`, a comment). Its sense of where a",
        "span ends is weak: once it has written some text it rarely gives a pad more than even odds, so the",
        "engine's pad tail (which starts at the model's median length) seldom cuts a span short and the learned",
        "span behaves much like the fixed-length one. Treat it as a working default that exercises the whole",
        "stack; serve a real CoDA checkpoint (`--model`) for useful completions.",
        "",
    ]
    card = out / "README.md"
    card.write_text("\n".join(lines))
    return card
