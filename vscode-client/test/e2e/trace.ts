/** The LSP traffic lspTap.ts recorded, as the client's requests with their answers. */

import * as fs from 'node:fs';

import { TraceLine } from './lspTap';

export interface Position {
    line: number;
    character: number;
}

export interface TracedRequest {
    id: number | string;
    method: string;
    params: { position?: Position; context?: { triggerKind?: number; selectedCompletionInfo?: unknown } };
    sentAt: number;
    cancelledAt?: number;        // when the client sent $/cancelRequest for it
    answeredAt?: number;
    result?: unknown;
    errorCode?: number;          // -32800: cancelled; -32801: the document changed meanwhile
}

export function readTrace(file: string): TraceLine[] {
    if (!fs.existsSync(file)) {
        return [];
    }
    // the tap may be writing the last line right now
    return fs.readFileSync(file, 'utf8').split('\n').filter((line) => line.endsWith('}'))
        .map((line) => JSON.parse(line) as TraceLine);
}

/** The client's requests in the order sent, each with its cancellation and answer where the trace has them. */
export function clientRequests(lines: TraceLine[]): TracedRequest[] {
    const requests = new Map<number | string, TracedRequest>();
    for (const { t, from, message } of lines) {
        if (from === 'client' && message.method === '$/cancelRequest') {
            const cancelled = requests.get((message.params as { id: number | string }).id);
            if (cancelled) {
                cancelled.cancelledAt ??= t;
            }
        } else if (from === 'client' && message.method !== undefined && message.id !== undefined) {
            requests.set(message.id, { id: message.id, method: message.method,
                params: message.params ?? {}, sentAt: t });
        } else if (from === 'server' && message.method === undefined && message.id !== undefined) {
            const request = requests.get(message.id);
            if (request) {
                request.answeredAt = t;
                request.result = message.result;
                request.errorCode = message.error?.code;
            }
        }
    }
    return [...requests.values()];
}

export const INLINE_COMPLETION = 'textDocument/inlineCompletion';

export function samePosition(a: Position | undefined, b: Position): boolean {
    return a !== undefined && a.line === b.line && a.character === b.character;
}
