/** How the server is launched (command | Python interpreter | tcp) and one message naming the setting per failure. */

import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';

import { LaunchSettings, StartFailure, serverArguments } from './settings';

export type LaunchPlan =
    | { kind: 'process'; command: string; args: string[]; setting: string }
    | { kind: 'tcp'; host: string; port: number };

/** The last lines a server wrote to stderr before it exited: the reason it gives for exiting. */
const STDERR_LINES_KEPT = 20;
/** A server that imports torch and builds its features answers initialize within seconds; this is a hang. */
export const INITIALIZE_TIMEOUT_MS = 60_000;

/** What to start for these settings: coda.server.tcp, else coda.server.command, else coda.server.python, else
 * `coda-lsp` from PATH. `setting` is the one to change when the start fails. */
export function launchPlan(launch: LaunchSettings, platform: NodeJS.Platform = process.platform): LaunchPlan {
    if (launch.tcp) {
        const match = /^([^\s:]+):(\d{1,5})$/.exec(launch.tcp);
        const port = match ? Number(match[2]) : 0;
        if (!match || port < 1 || port > 65535) {
            throw new StartFailure(`coda.server.tcp is "${launch.tcp}"; expected host:port, e.g. 127.0.0.1:2087`,
                'coda.server.tcp');
        }
        return { kind: 'tcp', host: match[1], port };
    }
    const args = serverArguments(launch);
    if (launch.command) {
        return { kind: 'process', command: launch.command, args, setting: 'coda.server.command' };
    }
    if (launch.python) {
        return { kind: 'process', command: interpreterOf(launch.python, platform), args: ['-m', 'coda_lsp', ...args],
            setting: 'coda.server.python' };
    }
    return { kind: 'process', command: 'coda-lsp', args, setting: 'coda.server.command' };
}

/** A virtual environment folder means its interpreter; anything else is taken to be an interpreter. */
export function interpreterOf(python: string, platform: NodeJS.Platform = process.platform): string {
    let isFolder = false;
    try {
        isFolder = fs.statSync(python).isDirectory();
    } catch {
        return python;  // spawning reports that it does not exist, with the setting
    }
    return isFolder ? path.join(python, ...(platform === 'win32' ? ['Scripts', 'python.exe'] : ['bin', 'python'])) : python;
}

/** A started server process and what it wrote to stderr, for the message when it exits early. */
export interface ServerProcess {
    child: ChildProcess;
    stderrTail(): string[];
}

/** Spawn the planned process; StartFailure (naming plan.setting) if the executable cannot be run at all. */
export function spawnServer(plan: Extract<LaunchPlan, { kind: 'process' }>, env: NodeJS.ProcessEnv = process.env,
                            onStderr?: (chunk: string) => void): Promise<ServerProcess> {
    const child = spawn(plan.command, plan.args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const tail: string[] = [];
    let partial = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
        onStderr?.(chunk);
        const lines = (partial + chunk).split('\n');
        partial = lines.pop() ?? '';
        tail.push(...lines.filter((line) => line.trim()));
        tail.splice(0, Math.max(0, tail.length - STDERR_LINES_KEPT));
    });
    const stderrTail = () => (partial.trim() ? [...tail, partial] : [...tail]);
    return new Promise((resolve, reject) => {
        child.once('spawn', () => resolve({ child, stderrTail }));
        child.once('error', (error: NodeJS.ErrnoException) => reject(spawnFailure(plan, error)));
    });
}

export function spawnFailure(plan: Extract<LaunchPlan, { kind: 'process' }>, error: NodeJS.ErrnoException): StartFailure {
    const what = plan.setting === 'coda.server.python' ? 'Python interpreter' : 'coda-lsp executable';
    const reason = error.code === 'ENOENT' ? 'was not found' : error.code === 'EACCES' ? 'is not executable' : error.message;
    const fix = plan.setting === 'coda.server.python'
        ? 'set coda.server.python to a Python or virtual environment that has coda-lsp installed'
        : 'set coda.server.command to the coda-lsp executable (e.g. .venv/bin/coda-lsp) or coda.server.python to a '
          + 'Python that has it';
    return new StartFailure(`The ${what} "${plan.command}" ${reason}: ${fix}.`, plan.setting);
}

/** Why a server exited (before it was initialised, unless `started`), from its exit code and last stderr lines. */
export function exitFailure(plan: LaunchPlan, code: number | null, stderrTail: string[], started = false): StartFailure {
    const stderr = stderrTail.join('\n');
    const last = stderrTail.at(-1) ?? '';
    if (plan.kind === 'process' && /No module named '?coda_lsp/.test(stderr)) {
        return new StartFailure(`"${plan.command}" has no coda-lsp installed (pip install it there), or set `
            + 'coda.server.python to a Python that has it.', 'coda.server.python');
    }
    if (/--model|model folder|Hugging Face cache|no model at/.test(last)) {
        return new StartFailure(`${last.replace(/^coda-lsp: (error: )?/, 'coda-lsp: ')} (setting coda.model)`, 'coda.model');
    }
    const setting = plan.kind === 'tcp' ? 'coda.server.tcp' : plan.setting;
    const said = last ? `: ${last}` : ' without saying why';
    const when = started ? '' : ' before it started';
    return new StartFailure(`coda-lsp exited with code ${code ?? 'unknown'}${when}${said} (check ${setting}).`, setting);
}

export function connectTcp(host: string, port: number): Promise<net.Socket> {
    return new Promise((resolve, reject) => {
        const socket = net.connect({ host, port });
        socket.once('connect', () => resolve(socket));
        socket.once('error', (error: NodeJS.ErrnoException) => reject(new StartFailure(
            `No coda-lsp answers at ${host}:${port} (${error.code ?? error.message}): start \`coda-lsp --tcp `
            + `${host}:${port}\` or clear coda.server.tcp.`, 'coda.server.tcp')));
    });
}

export function initializeTimeout(plan: LaunchPlan, timeoutMs: number): StartFailure {
    const setting = plan.kind === 'tcp' ? 'coda.server.tcp' : plan.setting;
    const what = plan.kind === 'tcp' ? `${plan.host}:${plan.port}` : `"${plan.command}"`;
    return new StartFailure(`${what} did not answer initialize within ${timeoutMs / 1000} s: is it coda-lsp? `
        + `(check ${setting})`, setting);
}

/** `promise`, or `failure()` once `ms` pass first. */
export function withTimeout<T>(promise: Promise<T>, ms: number, failure: () => Error): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(failure()), ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
