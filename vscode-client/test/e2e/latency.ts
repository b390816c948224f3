/** Completion latency in a real VS Code against coda-lsp alone, in the same run (npm run bench:vscode --
 * [--rounds N] [--key-delay MS] [--session-only]). Each round types the same lines into a Python file in
 * code-server at a person's pace, stopping after each piece until VS Code's requests there settled, then sends
 * the session's traffic to a fresh coda-lsp twice without VS Code: all of it at the same times (replayed), and each
 * answered inline request on its own (alone); --session-only skips both. Prints, per answered request, the
 * server's time from request to answer in each, the traffic VS Code sent, what the status bar said, and the cores
 * coda-lsp and the editor used while the typist waited. Times are what lspTap.js saw: what the status bar's
 * latency measures, plus the pipe. */

import * as path from 'node:path';
import { parseArgs } from 'node:util';

import { sampleCpu } from './cpu';
import { TraceLine } from './lspTap';
import { TracedServer, documentsAtRequests, recordedConfiguration, replaySession, sendAlone } from './replay';
import { COMPLETION_MS, MODEL, PYTHON, RESULTS, VsCodeSession } from './session';
import { INLINE_COMPLETION, TracedRequest, clientRequests, readTrace } from './trace';
import { waitFor } from './workbench';

const FILE = 'shapes.py';
const TEXT = 'import math\n\n\ndef area(radius):\n    return math.pi * radius ** 2\n';
/** Typed at the end of the file; after each piece the typist waits for the completion there. `null`: remove the
 * indentation VS Code put on the new line (Backspace), as a person starting a new top-level function does. */
const PIECES: (string | null)[] = [
    '\n', null, '\n\ndef circumference(radius):\n', 'return 2 * math.pi * radius', '\n', null,
    '\n\ndef volume(radius):\n', 'return 4 / 3 * math.pi * radius ** 3', '\n', null,
    '\n\ndef diameter(radius):\n', 'return 2 * radius',
];
/** After an answer, the typist reads the ghost text this long before typing on. */
const READ_MS = 1_000;
/** VS Code asks within a few hundred ms of a keystroke (longer on a busy machine); this long without a request
 * means it asks nothing more here. */
const QUIET_MS = 3_000;

interface Row {
    position: string;
    where: 'new line' | 'in a line';
    vscode: number;
    replayed: number | undefined;
    alone: number | undefined;
}

function elapsed(request: TracedRequest | undefined): number | undefined {
    return request?.answeredAt === undefined || request.errorCode !== undefined
        ? undefined : request.answeredAt - request.sentAt;
}

function median(values: (number | undefined)[]): string {
    const known = values.filter((value): value is number => value !== undefined).sort((a, b) => a - b);
    return known.length ? String(Math.round(known[Math.floor((known.length - 1) / 2)])) : '-';
}

/** Wait until VS Code has no inline request in flight and sent none for QUIET_MS since `typedAt`: its last one
 * was answered, or cancelled (as it does when its quick suggestions start). Resolves to when that was. */
function settled(tracePath: string, typedAt: number): Promise<number> {
    return waitFor('the inline requests settled', COMPLETION_MS, () => {
        const inline = clientRequests(readTrace(tracePath)).filter((request) => request.method === INLINE_COMPLETION);
        const last = inline.at(-1);
        const quietSince = Math.max(typedAt, last?.answeredAt ?? typedAt);
        return Promise.resolve(inline.every((request) => request.answeredAt !== undefined)
            && Date.now() - quietSince > QUIET_MS ? quietSince : undefined);
    });
}

/** Seconds spent waiting for answers after typing, and the CPU seconds each side used meanwhile. */
interface Waiting {
    seconds: number;
    server: number;
    editor: number;
}

async function typeSession(keyDelayMs: number, resultsDir: string)
    : Promise<{ trace: TraceLine[]; status: string; waiting: Waiting }> {
    const session = await VsCodeSession.start({ [FILE]: TEXT }, resultsDir);
    const waiting: Waiting = { seconds: 0, server: 0, editor: 0 };
    try {
        const bench = session.workbench;
        await session.openWhenReady(FILE);
        await bench.page.keyboard.press('Control+End');
        for (const piece of PIECES) {
            if (piece === null) {
                for (let column = (await bench.cursor()).character; column > 0; column -= 4) {
                    await bench.page.keyboard.press('Backspace');
                }
                continue;
            }
            await bench.page.keyboard.type(piece, { delay: keyDelayMs });
            const typed = sampleCpu();
            const quietSince = await settled(session.trace, typed.at);
            const answered = sampleCpu();  // the quiet time after the answer costs next to nothing either side
            waiting.seconds += (quietSince - typed.at) / 1000;
            waiting.server += answered.server - typed.server;
            waiting.editor += answered.editor - typed.editor;
            await new Promise((resolve) => setTimeout(resolve, READ_MS));
        }
        await bench.screenshot(path.join(resultsDir, 'typed.png'));
        return { trace: readTrace(session.trace), status: await bench.codaStatus(), waiting };
    } finally {
        await session.stop();
    }
}

function traffic(requests: TracedRequest[], trace: TraceLine[]): string {
    const inline = requests.filter((request) => request.method === INLINE_COMPLETION);
    const count = (method: string) => trace.filter(({ from, message }) => from === 'client'
        && message.method === method).length;
    const other = [...new Set(requests.map((request) => request.method))]
        .filter((method) => method !== INLINE_COMPLETION && method !== 'coda/status' && method !== 'initialize')
        .map((method) => `${method} ${requests.filter((request) => request.method === method).length}`);
    return `inlineCompletion ${inline.length} (cancelled by VS Code ${inline.filter((r) => r.cancelledAt).length}, `
        + `answered ${inline.filter((r) => r.errorCode === undefined && r.answeredAt).length}, `
        + `with selectedCompletionInfo ${inline.filter((r) => r.params.context?.selectedCompletionInfo).length}); `
        + `didChange ${count('textDocument/didChange')}; ${other.join('; ')}`;
}

async function round(index: number, keyDelayMs: number, withBaselines: boolean): Promise<Row[]> {
    const resultsDir = path.join(RESULTS, `latency-${index}`);
    const { trace, status, waiting } = await typeSession(keyDelayMs, resultsDir);
    const requests = clientRequests(trace);
    const answered = requests.filter((request) => request.method === INLINE_COMPLETION
        && elapsed(request) !== undefined);
    const args = ['--model', MODEL, '--dtype', 'fp32'];
    const configuration = recordedConfiguration(trace);

    let replayed: TracedRequest[] = [];
    let alone = new Map<number | string, TracedRequest>();
    if (withBaselines) {
        let server = new TracedServer(PYTHON, args, configuration);
        replayed = await replaySession(trace, server, COMPLETION_MS).finally(() => server.stop());
        server = new TracedServer(PYTHON, args, configuration);
        alone = await sendAlone(trace, answered, server, COMPLETION_MS).finally(() => server.stop());
    }

    console.log(`round ${index}: VS Code sent ${traffic(requests, trace)}; the status bar said "${status}"; `
        + `while the typist waited (${waiting.seconds.toFixed(0)} s) coda-lsp used `
        + `${(waiting.server / waiting.seconds).toFixed(2)} cores and the editor (code-server, Chromium) `
        + `${(waiting.editor / waiting.seconds).toFixed(2)}`);
    const documents = documentsAtRequests(trace);
    return answered.map((request) => {
        const position = request.params.position!;
        const line = documents.get(request.id)!.text.split('\n')[position.line] ?? '';
        return {
            position: `${position.line}:${position.character}`,
            where: line.slice(0, position.character).trim() ? 'in a line' : 'new line',
            vscode: elapsed(request)!,
            replayed: elapsed(replayed.find((again) => again.id === request.id)),
            alone: elapsed(alone.get(request.id)),
        };
    });
}

async function main(): Promise<void> {
    const { values } = parseArgs({ options: { rounds: { type: 'string', default: '1' },
        'key-delay': { type: 'string', default: '100' }, 'session-only': { type: 'boolean', default: false } } });
    const rounds = Number(values.rounds);
    const keyDelayMs = Number(values['key-delay']);
    const rows: Row[] = [];
    for (let index = 1; index <= rounds; index++) {
        rows.push(...await round(index, keyDelayMs, !values['session-only']));
    }
    console.log(`\nshipped model (fp32), ${keyDelayMs} ms a key; server time from request to answer, ms`);
    console.log('request | where | in VS Code | replayed without VS Code | alone');
    console.log('--- | --- | ---: | ---: | ---:');
    for (const row of rows) {
        console.log(`${row.position} | ${row.where} | ${row.vscode} | ${row.replayed ?? '-'} | ${row.alone ?? '-'}`);
    }
    for (const where of ['new line', 'in a line'] as const) {
        const some = rows.filter((row) => row.where === where);
        console.log(`p50 ${where} (${some.length}) | | ${median(some.map((row) => row.vscode))} | `
            + `${median(some.map((row) => row.replayed))} | ${median(some.map((row) => row.alone))}`);
    }
}

main().catch((error: unknown) => {
    console.error(`bench:vscode: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
});
