"""End to end through `coda-train`: tokenize, the tiny preset's three stages, export, eval-loss, and an infill
of the exported checkpoint through coda_engine. Plus one-line errors from the entry point."""

from __future__ import annotations

import json

import pytest

from coda_training.cli import main

FUNCTIONS = [
    "def add(a, b):\n    return a + b\n",
    "def scale(values, factor):\n    return [v * factor for v in values]\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n"
    "    def push(self, item):\n        self.items.append(item)\n",
    "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
]


@pytest.fixture
def source_tree(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(12):
        (src / f"mod{i}.py").write_text("\n".join(FUNCTIONS[(i + j) % len(FUNCTIONS)] for j in range(3)))
    return src


def stage_args(stage: str, tmp_path, reference_dir, init: str | None) -> list[str]:
    args = [stage, "--config", "tiny", f"--run_dir={tmp_path / stage}", f"--tokenizer_dir={reference_dir}",
            "--num_steps=4", "--log_every=2", "--checkpoint.every=2", "--optim.warmup_steps=1",
            "--mesh.fsdp=2", "--mesh.tensor=4"]  # 8 fake devices: the tiny micro-batch of 2 rows splits 2 ways
    if init:
        args.append(f"--init.path={tmp_path / init}")
    data = tmp_path / ("infill" if stage == "sft" else "packed")
    return args + [f"--data.path={data}"]


# Three compiled stages on 2 cores: about 4.5 minutes alone, past the suite's 300 s default under load.
@pytest.mark.timeout(900)
def test_tiny_three_stages_export_and_infill(tmp_path, source_tree, reference_dir, capsys) -> None:
    torch = pytest.importorskip("torch")
    from coda_engine import Engine
    from coda_engine.params import InfillParams

    tokenize = ["tokenize", str(source_tree), "--tokenizer", str(reference_dir)]
    assert main([*tokenize, "--out", str(tmp_path / "packed")]) == 0
    spans = ["--kind", "infill", "--seq-len", "64", "--max-middle", "12", "--max-tail", "4"]
    assert main([*tokenize, "--out", str(tmp_path / "infill"), *spans]) == 0
    for stage, init in (("pretrain", None), ("midtrain", "pretrain"), ("sft", "midtrain")):
        assert main(stage_args(stage, tmp_path, reference_dir, init)) == 0
        err = capsys.readouterr().err
        assert f"{stage} step 2/4 | loss " in err and " tok/s | MFU " in err and "| ETA 0:00:" in err
        rows = [json.loads(line) for line in (tmp_path / stage / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == [2, 4]
        assert {"loss", "masked_token_nll", "grad_norm", "lr", "tokens_per_s", "mfu"} <= set(rows[0])

    assert main(["export", "--run-dir", str(tmp_path / "sft"), "--out", str(tmp_path / "hf")]) == 0
    engine = Engine.from_pretrained(tmp_path / "hf", device="cpu", dtype=torch.float32)
    result = engine.infill("def add(a, b):\n    return ", "\n", 8, InfillParams(steps=4))
    assert len(result.token_ids) == 8 and 151669 not in result.token_ids  # every slot written
    assert isinstance(result.text, str)

    capsys.readouterr()
    evaluate = ["eval-loss", "--config", str(tmp_path / "sft" / "config.yaml"), "--stage", "sft", "--batches", "2"]
    assert main(evaluate) == 0
    from_run = json.loads(capsys.readouterr().out)
    assert from_run["loss"] > 0 and from_run["source"].endswith("step 4")
    assert main([*evaluate, "--hf", str(tmp_path / "hf")]) == 0
    from_export = json.loads(capsys.readouterr().out)
    assert from_export["loss"] == pytest.approx(from_run["loss"], rel=1e-5)  # the export holds the trained weights


@pytest.mark.parametrize("argv, message", [
    (["pretrain", "--config", "tiny", "--optim.lr=1"], "unknown config key 'optim.lr'"),
    (["pretrain", "--config", "tiny", "--data.path=/nonexistent"], "data /nonexistent: no manifest.json"),
    (["pretrain", "--config", "tiny", "stray"], "unrecognised argument 'stray'"),
    (["tokenize", "/nonexistent", "--tokenizer", "/nonexistent", "--out", "/tmp/x"],
     "tokenizer folder /nonexistent does not exist"),
    (["export", "--run-dir", "/nonexistent", "--out", "/tmp/x"], "has no config.yaml"),
])
def test_errors_are_one_line_with_status_2(argv: list[str], message: str, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("coda-train: error: ") and message in err and err.count("\n") == 1
