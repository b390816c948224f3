/** What VS Code sent, sent again to a fresh coda-lsp without VS Code: the whole trace at its own pace (replay), or
 * each answered inline request on its own (alone). The latency bench compares both with the session itself. */

import { ChildProcess, spawn } from 'node:child_process';

import { TraceLine, frame, readMessages } from './lspTap';
import { INLINE_COMPLETION, TracedRequest, clientRequests } from './trace';
import { waitFor } from './workbench';

type Message = TraceLine['message'];

interface TextDocument {
    uri: string;
    languageId: string;
    version: number;
    text: string;
}

interface ContentChange {
    range?: { start: { line: number; character: number }; end: { line: number; character: number } };
    text: string;
}

/** Offset of an LSP position in `text` (UTF-16 code units, as JavaScript strings count). */
function offsetAt(text: string, position: { line: number; character: number }): number {
    let offset = 0;
    for (let line = 0; line < position.line; line++) {
        const next = text.indexOf('\n', offset);
        if (next < 0) {
            return text.length;
        }
        offset = next + 1;
    }
    return Math.min(offset + position.character, text.length);
}

/** The document each client request was sent against, by request id, from didOpen and didChange. */
export function documentsAtRequests(lines: TraceLine[]): Map<number | string, TextDocument> {
    const open = new Map<string, TextDocument>();
    const atRequest = new Map<number | string, TextDocument>();
    for (const { from, message } of lines) {
        if (from !== 'client') {
            continue;
        }
        const params = message.params as { textDocument?: TextDocument; contentChanges?: ContentChange[] };
        if (message.method === 'textDocument/didOpen' && params.textDocument) {
            open.set(params.textDocument.uri, { ...params.textDocument });
        } else if (message.method === 'textDocument/didChange' && params.textDocument) {
            const document = open.get(params.textDocument.uri);
            for (const change of document ? params.contentChanges ?? [] : []) {
                const { text } = document!;
                document!.text = change.range
                    ? text.slice(0, offsetAt(text, change.range.start)) + change.text
                        + text.slice(offsetAt(text, change.range.end))
                    : change.text;
            }
            if (document) {
                document.version = params.textDocument.version;
            }
        } else if (message.id !== undefined && message.method !== undefined && params.textDocument) {
            const document = open.get(params.textDocument.uri);
            if (document) {
                atRequest.set(message.id, { ...document });
            }
        }
    }
    return atRequest;
}

/** A fresh `python -m coda_lsp` whose traffic is recorded as lspTap.js records it; it answers the server's own
 * requests as the extension does (workspace/configuration with what VS Code answered, the rest with null). */
export class TracedServer {
    readonly lines: TraceLine[] = [];
    private readonly child: ChildProcess;
    private nextId = 1;

    constructor(python: string, args: string[], private readonly configuration: unknown) {
        this.child = spawn(python, ['-m', 'coda_lsp', ...args], { stdio: ['pipe', 'pipe', 'ignore'] });
        readMessages(this.child.stdout!, (json) => {
            const message = JSON.parse(json) as Message;
            this.lines.push({ t: Date.now(), from: 'server', message });
            if (message.method !== undefined && message.id !== undefined) {
                this.send({ id: message.id,
                    result: message.method === 'workspace/configuration' ? this.configuration : null });
            }
        });
    }

    send(message: Message): void {
        this.lines.push({ t: Date.now(), from: 'client', message });
        this.child.stdin!.write(frame(JSON.stringify({ jsonrpc: '2.0', ...message })));
    }

    /** Send a request of ours and wait for its answer. */
    async request(method: string, params: unknown, timeoutMs: number): Promise<TracedRequest> {
        const id = `bench-${this.nextId++}`;
        this.send({ id, method, params });
        return waitFor(`coda-lsp's answer to ${method}`, timeoutMs, () =>
            Promise.resolve(clientRequests(this.lines).find((request) => request.id === id
                && request.answeredAt !== undefined)));
    }

    /** Initialize as VS Code did and wait for the model. */
    async initialize(recorded: TraceLine[], timeoutMs: number): Promise<void> {
        const initialize = recorded.find((line) => line.message.method === 'initialize')!.message;
        await this.request('initialize', initialize.params, timeoutMs);
        this.send({ method: 'initialized', params: {} });
        await waitFor('the model ready', timeoutMs, async () => {
            const status = await this.request('coda/status', {}, timeoutMs);
            return (status.result as { state: string }).state === 'ready' ? true : undefined;
        });
    }

    async stop(): Promise<void> {
        const exited = new Promise((resolve) => this.child.once('exit', resolve));
        this.child.kill();
        await exited;
    }
}

/** What VS Code answered to coda-lsp's workspace/configuration (the `coda` settings). */
export function recordedConfiguration(recorded: TraceLine[]): unknown {
    const asked = new Set(recorded.filter(({ from, message }) => from === 'server'
        && message.method === 'workspace/configuration').map(({ message }) => message.id));
    return recorded.find(({ from, message }) => from === 'client' && message.method === undefined
        && asked.has(message.id))?.message.result;
}

/** Send the session's client messages again, from its first inline request on at the times VS Code sent them
 * (the setup before it at once, then waiting for the model); the replay's requests as the trace records them. */
export async function replaySession(recorded: TraceLine[], server: TracedServer, timeoutMs: number)
    : Promise<TracedRequest[]> {
    const fromClient = recorded.filter(({ from, message }) => from === 'client' && message.method !== undefined);
    const start = fromClient.findIndex(({ message }) => message.method === INLINE_COMPLETION);
    await server.initialize(recorded, timeoutMs);
    for (const { message } of fromClient.slice(0, start)) {
        if (message.method !== 'initialize' && message.method !== 'initialized') {
            server.send(message);
        }
    }
    const t0 = fromClient[start].t;
    const began = Date.now();
    for (const { t, message } of fromClient.slice(start)) {
        const wait = t - t0 - (Date.now() - began);
        if (wait > 0) {
            await new Promise((resolve) => setTimeout(resolve, wait));
        }
        server.send(message);
    }
    return waitFor('the replayed requests answered', timeoutMs, () => {
        const requests = clientRequests(server.lines).filter((request) => typeof request.id === 'number');
        return Promise.resolve(requests.every((request) => request.answeredAt !== undefined) ? requests : undefined);
    });
}

/** Each of `requests` on its own: its document opened as it was, the same request sent, the answer awaited. */
export async function sendAlone(recorded: TraceLine[], requests: TracedRequest[], server: TracedServer,
                                timeoutMs: number): Promise<Map<number | string, TracedRequest>> {
    const documents = documentsAtRequests(recorded);
    await server.initialize(recorded, timeoutMs);
    const answers = new Map<number | string, TracedRequest>();
    let opened: string | undefined;
    for (const request of requests) {
        const document = documents.get(request.id)!;
        if (opened !== undefined) {
            server.send({ method: 'textDocument/didClose', params: { textDocument: { uri: opened } } });
        }
        server.send({ method: 'textDocument/didOpen', params: { textDocument: document } });
        opened = document.uri;
        answers.set(request.id, await server.request(request.method, request.params, timeoutMs));
    }
    return answers;
}
