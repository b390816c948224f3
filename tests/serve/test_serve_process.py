"""`coda-lsp serve` as a process: it listens before the model is loaded, reports health, answers llama.vim's
request with the batched backend on the tiny checkpoint, and stops cleanly on SIGINT."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_coda_lsp_serve_answers_and_stops(short_checkpoint: Path, tmp_path: Path) -> None:
    port = _free_port()
    key_file = tmp_path / "key"
    key_file.write_text("k3y\n")
    process = subprocess.Popen([sys.executable, "-m", "coda_lsp", "serve", "--model", str(short_checkpoint),
                                "--port", str(port), "--device", "cpu", "--dtype", "fp32", "--max-tokens", "8",
                                "--api-key-file", str(key_file), "--log-level", "WARNING"],
                               stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(url + "/health", timeout=5)
                if health.status_code == 200:
                    break
                assert health.json()["error"]["message"] == "Loading model"
            except httpx.ConnectError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.1)
        reply = httpx.post(url + "/infill", headers={"Authorization": "Bearer k3y"}, timeout=30,
                           json={"id_slot": 0, "input_prefix": "def add(a, b):\n", "input_suffix": "\n",
                                 "prompt": "    return ", "n_predict": 128, "response_fields": ["content"]})
        assert reply.status_code == 200 and reply.text.startswith('{"content":"')
        assert httpx.post(url + "/infill", json={"input_prefix": "", "input_suffix": ""}).status_code == 401
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0, err
    assert "Traceback" not in err
