"""python -m coda_training.recipe: corpus -> tokenizer -> token data -> pretrain -> midtrain -> sft -> HF folder.

Each step writes its own folder under --work and is skipped when that folder is already complete, and each
training stage resumes from its checkpoints, so rerunning an interrupted recipe picks up where it stopped.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

from coda_training.cli import main as coda_train
from coda_training.errors import TrainingError
from coda_training.recipe.card import write_card
from coda_training.recipe.corpus import build_corpus
from coda_training.recipe.tokenizer import SPECIAL_TOKENS, bytes_per_token, save_tokenizer, train_bpe

log = logging.getLogger("coda_training.recipe")
REPO_ROOT = Path(__file__).resolve().parents[2]
STAGES = ("pretrain", "midtrain", "sft")
# Chosen by measurement (training/recipe/README.md): 8192 entries give 3.59 bytes/token on held-out code, 10 %
# better than 4096, while 16384 would gain 7 % more at twice the embedding and head cost.
VOCAB_SIZE = 8192
SEQ_LEN = 512
# Up to five holes per row: five times the learned tokens per forward pass of the single-hole rows, each hole still
# in mostly clean code. 48 + 32 tokens covers a line or two plus the pad tail a 24-64-token editor span leaves.
INFILL = {"examples_per_file": 8, "max_middle": 48, "max_tail": 32, "max_spans": 5}


def step(name: str, done: Path) -> bool:
    """True when the step still has to run; logs either way."""
    if done.exists():
        log.info("%s: already done (%s)", name, done)
        return False
    log.info("%s ...", name)
    return True


def run(argv: list[str]) -> None:
    if coda_train(argv) != 0:
        raise TrainingError(f"coda-train {' '.join(argv[:1])} failed (see above)")


def build(work: Path, out: Path, humaneval_dir: Path, overrides: list[str]) -> dict:
    started = time.time()
    corpus, tokenizer_dir, data = work / "corpus", work / "tokenizer", work / "data"
    if step("corpus", corpus):
        build_corpus(corpus, humaneval_dir)
    if step("tokenizer", tokenizer_dir / "tokenizer.json"):
        tokenizer = train_bpe(corpus / "train", VOCAB_SIZE)
        log.info("tokenizer: %.3f bytes/token on held-out files", bytes_per_token(tokenizer, corpus / "valid"))
        save_tokenizer(tokenizer, tokenizer_dir)
    special = json.loads((tokenizer_dir / "added_tokens.json").read_text())
    pad_id, mask_id, eos_id = (special[t] for t in (SPECIAL_TOKENS[0], SPECIAL_TOKENS[3], SPECIAL_TOKENS[2]))
    tokenize = ["tokenize", "--tokenizer", str(tokenizer_dir)]
    if step("packed data", data / "packed"):
        run([*tokenize, "--out", str(data / "packed"), str(corpus / "train")])
    if step("held-out data", data / "packed-valid"):
        run([*tokenize, "--out", str(data / "packed-valid"), str(corpus / "valid")])
    if step("infill data", data / "infill"):
        run([*tokenize, "--out", str(data / "infill"), "--kind", "infill", "--seq-len", str(SEQ_LEN),
             "--examples-per-file", str(INFILL["examples_per_file"]), "--max-middle", str(INFILL["max_middle"]),
             "--max-tail", str(INFILL["max_tail"]), "--max-spans", str(INFILL["max_spans"]), str(corpus / "train")])
    shared = [f"--tokenizer_dir={tokenizer_dir}", f"--model.mask_token_id={mask_id}",
              f"--model.pad_token_id={pad_id}", f"--data.eos_token_id={eos_id}",
              f"--data.eval_path={data / 'packed-valid'}"]
    for stage in STAGES:
        stage_data = data / ("infill" if stage == "sft" else "packed")
        previous = f"--init.path={work / STAGES[STAGES.index(stage) - 1]}" if stage != "pretrain" else None
        run([stage, "--config", "default", *shared, f"--run_dir={work / stage}", f"--data.path={stage_data}",
             *([previous] if previous else []), *overrides])
    if out.exists():
        shutil.rmtree(out)
    run(["export", "--run-dir", str(work / "sft"), "--out", str(out)])
    write_card(work, out, held_out_loss(work), INFILL)
    return {"elapsed_minutes": round((time.time() - started) / 60, 1)}


def held_out_loss(work: Path) -> dict[str, float]:
    """The final model's diffusion loss on the held-out files (packed, unconditional noise)."""
    from coda_training.config import load_config
    from coda_training.trainer import context_for, evaluate, load_run_params

    cfg = load_config("pretrain", str(work / "sft" / "config.yaml"),
                      ["masking.conditional=false", f"data.path={work / 'data' / 'packed-valid'}"])
    ctx = context_for(cfg)
    params, _ = load_run_params(cfg, ctx)
    return evaluate(cfg, params, ctx, num_batches=8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coda_training.recipe", description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO_ROOT / "runs" / "default",
                        help="scratch folder for the corpus, data and runs (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "models" / "coda-tiny",
                        help="the HF folder to write (replaced if present; default: %(default)s)")
    parser.add_argument("--humaneval-dir", type=Path, default=REPO_ROOT / "engine" / "tools" / "data" / "humaneval",
                        help="HumanEval data, used only to keep the benchmark out of the corpus")
    parser.add_argument("overrides", nargs="*", metavar="--section.key=value",
                        help="config overrides for every stage, after `--` (the shipped model uses none)")
    parser.add_argument("--card-only", action="store_true",
                        help="only rewrite the model card (e.g. after the harness wrote EVAL.md beside it)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every checkpoint operation at INFO
    try:
        if args.card_only:
            write_card(args.work, args.out, held_out_loss(args.work), INFILL)
            return 0
        summary = build(args.work, args.out, args.humaneval_dir, args.overrides)
    except TrainingError as exc:
        print(f"coda_training.recipe: error: {exc}", file=sys.stderr)
        return 2
    log.info("done in %.1f minutes: %s", summary["elapsed_minutes"], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
