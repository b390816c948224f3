"""python -m coda_training.bench: a config it cannot run is one line and exit status 2, no traceback."""

from __future__ import annotations

from coda_training import bench


def test_bench_bad_config_is_one_line(capsys) -> None:
    assert bench.main(["--preset", "default"]) == 2  # the shipped shape without its tokenizer's special ids
    err = capsys.readouterr().err.strip()
    assert err.startswith("python -m coda_training.bench: error: model.mask_token_id") and "\n" not in err
