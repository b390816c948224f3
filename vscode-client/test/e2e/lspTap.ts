/** An LSP tap, run as coda.server.command: `node lspTap.js PYTHON TRACE [coda-lsp args...]` starts
 * `PYTHON -m coda_lsp args...`, relays stdin and stdout unchanged, and appends every message either way to TRACE,
 * one JSON object a line: {t: ms since the epoch, from: 'client' | 'server', message}. The end-to-end test reads
 * it to know what VS Code asked and what the server answered. */

import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { Readable, Writable } from 'node:stream';

export interface TraceLine {
    t: number;
    from: 'client' | 'server';
    message: { id?: number | string; method?: string; params?: unknown; result?: unknown; error?: { code: number } };
}

const HEADER_END = '\r\n\r\n';

/** Calls `onMessage` with the JSON text of each complete LSP message `source` sends. */
export function readMessages(source: Readable, onMessage: (json: string) => void): void {
    let pending = Buffer.alloc(0);
    source.on('data', (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk]);
        for (;;) {
            const headerEnd = pending.indexOf(HEADER_END);
            if (headerEnd < 0) {
                return;
            }
            const length = /Content-Length: *(\d+)/i.exec(pending.subarray(0, headerEnd).toString('ascii'));
            const bodyStart = headerEnd + HEADER_END.length;
            const bodyEnd = bodyStart + Number(length?.[1] ?? 0);
            if (pending.length < bodyEnd) {
                return;
            }
            onMessage(pending.subarray(bodyStart, bodyEnd).toString('utf8'));
            pending = pending.subarray(bodyEnd);
        }
    });
}

/** An LSP frame holding `json`. */
export function frame(json: string): Buffer {
    const body = Buffer.from(json, 'utf8');
    return Buffer.concat([Buffer.from(`Content-Length: ${body.length}${HEADER_END}`, 'ascii'), body]);
}

/** Copies `source` to `sink` as it arrives, and each message to `onMessage`. */
function relay(source: Readable, sink: Writable, onMessage: (json: string) => void): void {
    source.on('data', (chunk: Buffer) => sink.write(chunk));
    source.on('end', () => sink.end());
    readMessages(source, onMessage);
}

function main(): void {
    const [python, tracePath, ...args] = process.argv.slice(2);
    const trace = fs.openSync(tracePath, 'a');
    const record = (from: TraceLine['from']) => (json: string) =>
        fs.writeSync(trace, `{"t":${Date.now()},"from":"${from}","message":${json}}\n`);
    const server = spawn(python, ['-m', 'coda_lsp', ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
    relay(process.stdin, server.stdin, record('client'));
    relay(server.stdout, process.stdout, record('server'));
    server.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
        process.on(signal, () => server.kill(signal));
    }
}

if (require.main === module) {
    main();
}
