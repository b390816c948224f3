"""`python -m coda_lsp.tools.serve_bench`: a real `coda-lsp serve` under 1, 2, 4, ... concurrent llama.vim-shaped clients.

Each client types one line of its own real file of this repository, one POST /infill per character as llama.vim
sends them (its own `id_slot`, `cache_prompt`, greedy, no deadline). The same requests are first sent one at a time
(the baseline, whose answers the concurrent run must repeat token for token), then by all clients at once. The
method in full: docs/benchmarks.md, "What the benchmark tools send".
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from coda_lsp.cli import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parents[2]  # the clone: its source files are what the clients type
SOURCES = ("coda_lsp", "engine", "training")


@dataclass(frozen=True)
class Request:
    client: int
    body: dict


@dataclass(frozen=True)
class Answer:
    content: str
    latency_s: float
    tokens: int


def workload(clients: int, per_client: int, n_predict: int, first_slot: int, seed: int = 0) -> list[list[Request]]:
    """Per client, `per_client` requests typing one real line of one real file of this repository. Client i sends
    id_slot first_slot + i: a fresh slot starts with no cached canvas, so runs that use other slots compare."""
    files = sorted(p for folder in SOURCES for p in (ROOT / folder).rglob("*.py") if p.stat().st_size > 2000)
    rng = random.Random(seed)
    chosen = rng.sample(files, clients) if clients <= len(files) else [rng.choice(files) for _ in range(clients)]
    plans = []
    for client, path in enumerate(chosen):
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        candidates = [i for i, line in enumerate(lines) if 10 <= i < len(lines) - 5
                      and len(line.strip()) > per_client + 4]
        row = rng.choice(candidates)
        line = lines[row]
        indent = len(line) - len(line.lstrip())
        above, below = "".join(lines[max(0, row - 256):row]), "".join(lines[row + 1:row + 65])
        plans.append([Request(client, {
            "id_slot": first_slot + client, "input_prefix": above, "input_suffix": line[indent + typed:] + below,
            "input_extra": [], "prompt": line[:indent + typed], "n_predict": n_predict, "stop": [], "n_indent": indent,
            "top_k": 40, "top_p": 0.90, "samplers": ["top_k", "top_p", "infill"], "temperature": 0.0,
            "stream": False, "cache_prompt": True, "model": "",
            "response_fields": ["content", "timings/predicted_n", "tokens_cached"]})
            for typed in range(per_client)])
    return plans


def post(url: str, body: dict, key: str | None) -> Answer:
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key or ''}"}
    started = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=600) as response:
        reply = json.loads(response.read())
    return Answer(reply["content"], time.perf_counter() - started, int(reply.get("timings/predicted_n", 0)))


def run_clients(url: str, plans: list[list[Request]], key: str | None) -> tuple[dict[tuple[int, int], Answer], float]:
    """Every client's requests in order, the clients concurrently; the answers by (client, index) and the wall time."""
    answers: dict[tuple[int, int], Answer] = {}
    errors: list[str] = []

    def client(plan: list[Request]) -> None:
        for index, request in enumerate(plan):
            try:
                answers[(request.client, index)] = post(url + "/infill", request.body, key)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                errors.append(f"client {request.client} request {index}: {exc}")

    threads = [threading.Thread(target=client, args=(plan,)) for plan in plans]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise SystemExit(f"serve_bench: {len(errors)} requests failed, first: {errors[0]}")
    return answers, time.perf_counter() - started


def rows_per_pass(url: str, key: str | None) -> tuple[float, float]:
    """(sum, count) of the rows-per-pass histogram in /metrics."""
    request = urllib.request.Request(url + "/metrics", headers={"Authorization": f"Bearer {key or ''}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    found = {"sum": 0.0, "count": 0.0}
    for line in text.splitlines():
        if "rows_per_pass" in line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name.rsplit("_", 1)[1]] = float(value)  # ..._sum, ..._count (and ..._bucket{le=...}, unused)
    return found["sum"], found["count"]


def row(label: str, answers: dict[tuple[int, int], Answer], wall_s: float, rows: float, same: str) -> str:
    latencies = sorted(a.latency_s * 1000 for a in answers.values())
    p95 = latencies[min(len(latencies) - 1, int(round(0.95 * (len(latencies) - 1))))]
    tokens = sum(a.tokens for a in answers.values())
    return (f"| {label} | {len(answers)} | {len(answers) / wall_s:.2f} | {tokens / wall_s:.1f} | "
            f"{statistics.median(latencies):.0f} | {p95:.0f} | {latencies[-1]:.0f} | {rows:.2f} | {same} |")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "coda_lsp", "serve", "--model", str(args.model), "--port", str(port),
               "--device", args.device, "--dtype", args.dtype, "--max-rows", str(args.max_rows),
               "--max-queue", str(max(64, 2 * max(args.clients))), "--log-level", "WARNING"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + args.load_timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"serve_bench: the server exited with {server.returncode} while loading")
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as response:
                if response.status == 200:
                    return server, url
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    server.kill()
    raise SystemExit(f"serve_bench: the server was not ready after {args.load_timeout_s:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coda_lsp.tools.serve_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="checkpoint folder (default: the shipped model)")
    parser.add_argument("--url", help="an already running coda-lsp serve (default: start one)")
    parser.add_argument("--api-key-file", type=Path, help="with --url: the server's API key")
    parser.add_argument("--clients", default="1,2,4,8,16", help="concurrent clients per run (default 1,2,4,8,16)")
    parser.add_argument("--requests", type=int, default=6, help="requests per client (default 6)")
    parser.add_argument("--n-predict", type=int, default=24, help="span per request (default 24)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--max-rows", type=int, default=16)
    parser.add_argument("--load-timeout-s", type=float, default=600)
    args = parser.parse_args(argv)
    try:
        args.clients = [int(c) for c in args.clients.split(",")]
    except ValueError:
        parser.error(f"--clients takes numbers separated by commas, got {args.clients!r}")
    key = args.api_key_file.read_text().splitlines()[0].strip() if args.api_key_file else None
    server, url = (None, args.url.rstrip("/")) if args.url else start_server(args)
    try:
        lines = ["| clients | requests | requests/s | tokens/s | p50 ms | p95 ms | max ms | rows/pass | "
                 "same answers |", "|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for run, clients in enumerate(args.clients):
            plans = workload(clients, args.requests, args.n_predict, first_slot=1000 * 2 * run)
            concurrent = workload(clients, args.requests, args.n_predict, first_slot=1000 * (2 * run + 1))
            # One at a time: client after client, each client's requests in order.
            before = rows_per_pass(url, key)
            runs = [run_clients(url, [plan], key) for plan in plans]
            alone = {index: answer for answers, _ in runs for index, answer in answers.items()}
            wall_alone = sum(wall for _, wall in runs)
            after = rows_per_pass(url, key)
            lines.append(row(f"{clients}, one at a time", alone, wall_alone,
                             (after[0] - before[0]) / max(1.0, after[1] - before[1]), "(baseline)"))
            together, wall = run_clients(url, concurrent, key)
            final = rows_per_pass(url, key)
            same = sum(together[k].content == alone[k].content for k in alone)
            lines.append(row(f"{clients} concurrent", together, wall,
                             (final[0] - after[0]) / max(1.0, final[1] - after[1]), f"{same}/{len(alone)}"))
            print(lines[-2], lines[-1], sep="\n", file=sys.stderr)
        print("\n".join(lines))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
