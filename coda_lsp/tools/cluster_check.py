"""A measurement, not a test: `coda-lsp serve --ray` with 2 replicas on one machine, a stream of requests from
several threads (each an editor typing: one client, its prefix growing), and one replica killed mid-load. Serve
starts a replacement; RayBackend sends the killed replica's jobs again. Prints the requests sent, answered,
refused (503) and failed; the goal is 0 failed.
"""

from __future__ import annotations

import argparse
import logging
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import ray
import uvicorn
from ray import serve

from coda_engine.params import EngineOptions
from coda_lsp.cli import DEFAULT_MODEL, LOG_FORMAT
from coda_lsp.serve.app import create_app
from coda_lsp.backends.ray import APP_NAME, ClusterOptions, RayBackend, backend_factory
from coda_lsp.serve.settings import ServeSettings

SNIPPET = ("def moving_average(values, window):\n    total = sum(values[:window])\n    averages = [total / window]\n"
           "    for i in range(window, len(values)):\n        total += values[i] - values[i - window]\n")
_REPLICA_PREFIX = f"SERVE_REPLICA::{APP_NAME}#EngineReplica#"  # Serve's actor names (ray.serve._private.common)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coda_lsp.tools.cluster_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--threads", type=int, default=4, help="clients sending at once (default 4)")
    parser.add_argument("--requests", type=int, default=40, help="requests per client (default 40)")
    parser.add_argument("--n-predict", type=int, default=16)
    parser.add_argument("--kill-at", type=float, default=0.3, help="kill a replica once this share is sent")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)  # RayBackend's resends are warnings

    options = ClusterOptions(replicas=2, cpus_per_replica=1,
                             engine=EngineOptions(device="cpu", max_rows=8, max_queue=16, warm_span=args.n_predict))
    started = time.perf_counter()
    app = create_app(backend_factory(args.model, options), ServeSettings(max_tokens=args.n_predict))
    server, thread, url = _serve(app)
    try:
        _wait_ready(url, timeout_s=300)
        ready_s = time.perf_counter() - started
        backend: RayBackend = app.state.host.backend
        results = _load(url, backend, args)
        print(f"ready in {ready_s:.1f} s (Ray, 2 replicas loading {args.model.name})")
        print("\n".join(results))
        print(f"resent by RayBackend after a replica died: {backend.num_retried}")
        print(f"answers by replica: {dict(backend.answers_by_replica)}")
    finally:
        server.should_exit = True  # the app's shutdown deletes the replicas and stops Ray
        thread.join(timeout=60)
    return 0


def _serve(app: Any) -> tuple[uvicorn.Server, threading.Thread, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", log_config=None))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    return server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}"


def _wait_ready(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("the replicas never became ready")


def _load(url: str, backend: RayBackend, args: argparse.Namespace) -> list[str]:
    """Send from every thread, kill the replica that answered last once `kill_at` of the requests are out, and
    wait for Serve's replacement to answer."""
    total = args.threads * args.requests
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    lock = threading.Lock()
    sent = threading.Semaphore(0)

    def client(slot: int) -> None:
        with httpx.Client(timeout=60) as http:
            for i in range(args.requests):
                cut = len(SNIPPET) * (i + 1) // args.requests  # the editor's cursor moving through the snippet
                body = {"input_prefix": f"# client {slot}\n" + SNIPPET[:cut], "input_suffix": "\n",
                        "n_predict": args.n_predict, "id_slot": slot}
                sent.release()
                try:
                    reply = http.post(url + "/infill", json=body)
                    kind = {200: "answered", 503: "refused (503)"}.get(reply.status_code, "failed")
                    detail = f"{reply.status_code} {reply.text[:160]}"
                except httpx.HTTPError as exc:
                    kind, detail = "failed", f"{type(exc).__name__}: {exc}"
                with lock:
                    outcomes[kind] += 1
                    if kind == "failed":
                        failures.append(detail)

    threads = [threading.Thread(target=client, args=(slot,)) for slot in range(args.threads)]
    for thread in threads:
        thread.start()
    for _ in range(int(total * args.kill_at)):
        sent.acquire()
    victim = _kill_busiest(backend)
    killed_at = time.perf_counter()
    replaced = _wait_for_replacement(victim, timeout_s=120)
    for thread in threads:
        thread.join()
    lines = [f"requests sent: {total}, answered: {outcomes['answered']}, refused (503): "
             f"{outcomes['refused (503)']}, failed: {outcomes['failed']}",
             f"killed replica {victim} after {int(total * args.kill_at)} requests were sent; "
             + (f"Serve's replacement {replaced[0]} was running {replaced[1] - killed_at:.1f} s later"
                if replaced else "no replacement within 120 s")]
    lines += [f"  failed: {detail}" for detail in failures[:10]]
    return lines


def _replicas() -> dict[str, str]:
    """Serve's replica id -> its actor's name, for this application's engine replicas."""
    names = [entry["name"] for entry in ray.util.list_named_actors(all_namespaces=True)]
    return {name[len(_REPLICA_PREFIX):]: name for name in names if name.startswith(_REPLICA_PREFIX)}


def _kill_busiest(backend: RayBackend) -> str:
    replicas = _replicas()
    victim = max(replicas, key=lambda replica: backend.answers_by_replica.get(replica, 0))
    # no_restart=False: the way a crash ends it (Serve creates replicas with max_restarts=0 and replaces them).
    ray.kill(ray.get_actor(replicas[victim], namespace="serve"), no_restart=False)
    return victim


def _wait_for_replacement(victim: str, timeout_s: float) -> tuple[str, float] | None:
    """The new replica's id and when Serve counted both replicas running again (the new one's model loaded)."""
    before = set(_replicas()) | {victim}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        new = set(_replicas()) - before
        states = serve.status().applications[APP_NAME].deployments["EngineReplica"].replica_states
        if new and states == {"RUNNING": 2}:
            return new.pop(), time.perf_counter()
        time.sleep(0.1)
    return None


if __name__ == "__main__":
    raise SystemExit(main())
