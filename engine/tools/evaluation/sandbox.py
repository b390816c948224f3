"""Run one untrusted Python program in a throw-away sandbox and report passed, failed or timeout.

Each program gets a fresh temporary working folder (also its HOME and TMPDIR), a scrubbed environment
(no proxies), closed stdin, `python -I`, its own session (process group), and resource limits on address
space, CPU time, processes, file size and core dumps. Where `unshare` works the program also runs in new
network and PID namespaces: no network at all, and when the sandbox's first process dies the kernel kills
every process it left behind.

Limits of this sandbox, by design or by environment:

- The file system is not hidden: the program can read what its user can read and write absolute paths
  its user may write. Relative paths, HOME and TMPDIR all land in the temporary folder, which is deleted.
- RLIMIT_NPROC counts every process of the user and the kernel never applies it to uid 0. Run as root,
  the sandbox therefore drops to `nobody`, using the first Python interpreter `nobody` may run (candidate
  programs need only the standard library); if none works, only the timeout stops a fork bomb.
- Without `unshare` (or user namespaces) the network stays reachable and a process that leaves its
  session escapes the kill on timeout; a warning is logged once.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

log = logging.getLogger(__name__)

NOBODY_UID = 65534
OUTPUT_TAIL_CHARS = 2000

ExecutionStatus = Literal["passed", "failed", "timeout"]

# Runs before the program: sets the limits on itself, then becomes the (isolated) interpreter, so the limits
# are inherited without a preexec_fn, which is unsafe in a process that has threads (torch's, the pool's).
_LAUNCHER = (
    "import json, os, resource, sys\n"
    "for name, value in json.loads(sys.argv[1]).items():\n"
    "    resource.setrlimit(getattr(resource, name), (value, value))\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


@dataclass(frozen=True)
class SandboxLimits:
    """What one program may use; the defaults leave HumanEval's heaviest tests ample room."""

    timeout_s: float = 10.0  # wall clock, s
    memory_bytes: int = 2 * 1024**3  # address space (RLIMIT_AS), bytes
    num_processes: int = 32  # processes beyond those its user already runs (RLIMIT_NPROC)
    file_size_bytes: int = 16 * 1024**2  # largest file it may write (RLIMIT_FSIZE), bytes; covers its output


@dataclass(frozen=True)
class ExecutionResult:
    status: ExecutionStatus
    reason: str  # "" when passed; else the last line of output, the signal, or the timeout
    elapsed_ms: float
    output: str  # last OUTPUT_TAIL_CHARS of stdout and stderr together


@dataclass(frozen=True)
class Isolation:
    """How programs are started on this machine, found once by trying the strongest option first."""

    command_prefix: tuple[str, ...]  # the `unshare ...` words before the interpreter, or ()
    interpreter: str
    run_as_uid: int
    has_network_namespace: bool

    @property
    def enforces_process_limit(self) -> bool:
        return self.run_as_uid != 0


def execute_program(source: str, limits: SandboxLimits = SandboxLimits()) -> ExecutionResult:
    """Run `source` as a Python program in a new sandbox; passed means exit status 0 within the timeout."""
    isolation = probe_isolation()
    workdir = Path(tempfile.mkdtemp(prefix="coda-eval-"))
    try:
        program = workdir / "candidate.py"
        program.write_text(source, encoding="utf-8")
        if isolation.run_as_uid != os.getuid():
            for path in (workdir, program):
                os.chown(path, isolation.run_as_uid, isolation.run_as_uid)
        command = [*_launcher_command(limits, isolation), *isolation.command_prefix,
                   isolation.interpreter, "-I", str(program)]
        with tempfile.TemporaryFile() as output:
            started = time.perf_counter()
            is_timeout, returncode = _run_in_own_session(command, workdir, output, limits.timeout_s)
            elapsed_ms = (time.perf_counter() - started) * 1000
            size = output.seek(0, os.SEEK_END)
            output.seek(max(0, size - 4 * OUTPUT_TAIL_CHARS))  # UTF-8 spends at most 4 bytes on a character
            text = output.read().decode("utf-8", errors="replace")[-OUTPUT_TAIL_CHARS:]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if is_timeout:
        return ExecutionResult("timeout", f"timed out after {limits.timeout_s:g} s", elapsed_ms, text)
    if returncode == 0:
        return ExecutionResult("passed", "", elapsed_ms, text)
    return ExecutionResult("failed", _failure_reason(returncode, text), elapsed_ms, text)


@functools.cache
def probe_isolation() -> Isolation:
    """The strongest way to start programs that works here (see the module docstring)."""
    for isolation in _isolation_candidates():
        if _can_start(isolation):
            return isolation
        log.debug("sandbox option unavailable: %s", isolation)
    log.warning("sandbox: no network namespace (unshare unavailable); programs can reach the network")
    return Isolation((), sys.executable, os.getuid(), has_network_namespace=False)


def _isolation_candidates() -> list[Isolation]:
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    namespaces = (unshare, "--net", "--pid", "--kill-child")
    if os.geteuid() != 0:
        return [Isolation((*namespaces, "--map-root-user"), sys.executable, os.getuid(), True)]
    as_nobody = (*namespaces, f"--setuid={NOBODY_UID}", f"--setgid={NOBODY_UID}")
    # A virtual environment or pyenv under /root is closed to `nobody`; the system interpreter usually is not.
    system_python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    interpreters = dict.fromkeys(filter(None, (sys.executable, sys._base_executable, system_python)))
    return [*(Isolation(as_nobody, interpreter, NOBODY_UID, True) for interpreter in interpreters),
            Isolation(namespaces, sys.executable, 0, True)]


def _can_start(isolation: Isolation) -> bool:
    command = [*isolation.command_prefix, isolation.interpreter, "-I", "-c", "pass"]
    try:
        # cwd "/" because `nobody` may not be allowed into the caller's folder.
        return subprocess.run(command, cwd="/", stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _launcher_command(limits: SandboxLimits, isolation: Isolation) -> list[str]:
    rlimits = {"RLIMIT_AS": limits.memory_bytes,
               "RLIMIT_CPU": math.ceil(limits.timeout_s) + 1,  # CPU time can only trail wall time: never fires first
               "RLIMIT_NPROC": _count_processes_of(isolation.run_as_uid) + limits.num_processes,
               "RLIMIT_FSIZE": limits.file_size_bytes, "RLIMIT_CORE": 0}
    return [sys.executable, "-I", "-S", "-c", _LAUNCHER, json.dumps(rlimits)]


def _count_processes_of(uid: int) -> int:
    # RLIMIT_NPROC caps the user's total, so the budget is granted on top of what the user already runs.
    count = 0
    for entry in os.scandir("/proc"):
        with contextlib.suppress(OSError):  # the process ended while we looked
            count += entry.name.isdigit() and entry.stat().st_uid == uid
    return count


def _run_in_own_session(command: list[str], workdir: Path, output: IO[bytes],
                        timeout_s: float) -> tuple[bool, int]:
    """Start `command` as a session leader and kill its whole process group when it ends or times out."""
    environment = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "TMPDIR": str(workdir), "LANG": "C.UTF-8"}
    process = subprocess.Popen(command, cwd=workdir, env=environment, stdin=subprocess.DEVNULL,
                               stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        is_timeout, returncode = False, process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        is_timeout, returncode = True, -signal.SIGKILL
    # Also after a normal exit: children the program left running in its group must not outlive it.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return is_timeout, returncode


def _failure_reason(returncode: int, output: str) -> str:
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    last_line = next((line.strip() for line in reversed(output.splitlines()) if line.strip()), "")
    return last_line or f"exit status {returncode}"
