"""Where the data files shipped with the tools live (see data/README.md)."""

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
CODA_V0_DIR = DATA_DIR / "coda-v0"      # CoDA-v0's config and tokenizer files, no weights
HUMANEVAL_DIR = DATA_DIR / "humaneval"  # HumanEval and its infilling tasks, *.jsonl.gz
