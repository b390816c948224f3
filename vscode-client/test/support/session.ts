/** The real coda-lsp, launched and configured exactly as the extension does it, driven over
 * vscode-languageserver-protocol (the library VS Code's client is built on), and a tiny checkpoint for it. */

import './register';

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { LanguageClient } from 'vscode-languageclient/node';
import {
    ApplyWorkspaceEditRequest,
    ClientCapabilities,
    ConfigurationRequest,
    InitializeResult,
    LogMessageNotification,
    ProtocolConnection,
    ShowMessageNotification,
    StreamMessageReader,
    StreamMessageWriter,
    TextEdit,
    WorkDoneProgress,
    WorkDoneProgressBegin,
    WorkDoneProgressCreateRequest,
    WorkDoneProgressEnd,
    WorkspaceEdit,
    createProtocolConnection,
} from 'vscode-languageserver-protocol/node';

import { clientOptions } from '../../src/client';
import { LaunchPlan, ServerProcess, launchPlan, spawnServer, withTimeout } from '../../src/server';
import { ConfigurationLike, readLaunchSettings } from '../../src/settings';
import { CodaStatus, STATUS_REQUEST } from '../../src/status';
import { fakeConfiguration } from './config';

export const ROOT = path.resolve(__dirname, '../../../..');
export const PYTHON = process.env.CODA_PYTHON ?? path.join(ROOT, '.venv', 'bin', 'python');
export const HUB_REPO_ID = 'coda-tests/CoDA-tiny-random';
/** Small spans keep an infill on the tiny model well under a second on two cores (as the pytest e2e tests). */
export const FAST_SETTINGS = { maxTokens: 12, singleLineTokens: 8, steps: 4, debounceMs: 0, contextTokens: 512 };

export interface Checkpoints {
    root: string;      // the temporary folder holding both, for the tests to remove
    folder: string;    // the tiny checkpoint
    hubCache: string;  // a Hugging Face cache (HF_HUB_CACHE) holding it as HUB_REPO_ID
}

/** The tiny random checkpoint with the real tokenizer, written by the project's own code (as tests/conftest.py). */
export function writeCheckpoints(): Checkpoints {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'coda-vscode-'));
    const script = [
        'import sys', 'from pathlib import Path',
        'from coda_engine.presets import write_random_checkpoint',
        'from coda_engine.tools.files import CODA_V0_DIR', 'from tests.clients.conftest import write_hub_cache',
        'out = Path(sys.argv[1])',
        "ckpt = write_random_checkpoint(out / 'ckpt', preset='tiny', seed=0, tokenizer_dir=CODA_V0_DIR)",
        `write_hub_cache(out / 'hub', '${HUB_REPO_ID}', ckpt)`,
    ].join('\n');
    const result = spawnSync(PYTHON, ['-c', script, out], { cwd: ROOT, encoding: 'utf8' });
    if (result.status !== 0) {
        throw new Error(`writing the tiny checkpoint failed: ${result.stderr || result.error}`);
    }
    return { root: out, folder: path.join(out, 'ckpt'), hubCache: path.join(out, 'hub') };
}

/** A server process started from `settings` and connected, not yet initialised, plus what it sent. */
export class Session {
    readonly progress: (WorkDoneProgressBegin | WorkDoneProgressEnd | { kind: 'report' })[] = [];
    readonly shownMessages: { type: number; message: string }[] = [];
    readonly logMessages: string[] = [];
    readonly appliedEdits: WorkspaceEdit[] = [];
    readonly configurationPulls: unknown[] = [];
    /** The server's exit code (null: killed by a signal), once it exits. */
    readonly exited: Promise<number | null>;

    constructor(readonly plan: LaunchPlan, readonly server: ServerProcess, readonly connection: ProtocolConnection,
                readonly config: ConfigurationLike) {
        this.exited = new Promise((resolve) => server.child.once('exit', (code) => resolve(code)));
    }

    /** initialize with the capabilities and initializationOptions vscode-languageclient computes from the
     * extension's options, then initialized. */
    async initialize(): Promise<InitializeResult> {
        const options = clientOptions(() => this.config, undefined);
        const initializationOptions: unknown = options.initializationOptions;
        const result = await this.connection.sendRequest<InitializeResult>('initialize', {
            processId: process.pid,
            clientInfo: { name: 'Visual Studio Code', version: '1.91.0' },
            rootUri: null,
            capabilities: extensionCapabilities(this.config),
            initializationOptions,
            workspaceFolders: null,
        });
        await this.connection.sendNotification('initialized', {});
        return result;
    }

    status(): Promise<CodaStatus> {
        return this.connection.sendRequest(STATUS_REQUEST, {});
    }

    async settled(timeoutMs = 60_000): Promise<CodaStatus> {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
            const current = await this.status();
            if (current.state !== 'loading' || Date.now() > deadline) {
                return current;
            }
            await new Promise((resolve) => setTimeout(resolve, 50));
        }
    }

    /** shutdown and exit as a client does; a server that does not go within seconds is killed. */
    async close(): Promise<void> {
        const { child } = this.server;
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        if (child.exitCode === null && child.signalCode === null && !child.killed) {
            await withTimeout(this.connection.sendRequest('shutdown'), 5_000, () => new Error('no shutdown answer'))
                .catch(() => undefined);
            await this.connection.sendNotification('exit').catch(() => undefined);
        }
        await this.exited;
        clearTimeout(timer);
        this.connection.dispose();
    }
}

/** The ClientCapabilities the real vscode-languageclient sends for the extension's options. */
export function extensionCapabilities(config: ConfigurationLike): ClientCapabilities {
    const client = new LanguageClient('coda', 'CoDA', { command: 'coda-lsp' }, clientOptions(() => config, undefined));
    return (client as unknown as { computeClientCapabilities(): ClientCapabilities }).computeClientCapabilities();
}

/** Launch the server the way the extension does for these coda.* values; answer the server's requests as
 * vscode-languageclient does, with the extension's middleware for workspace/configuration. */
export async function launch(values: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): Promise<Session> {
    const config = fakeConfiguration({ 'server.python': PYTHON, ...values });
    const plan = launchPlan(readLaunchSettings(config));
    if (plan.kind !== 'process') {
        throw new Error('these tests start the server themselves');
    }
    const server = await spawnServer(plan, env);
    const connection = createProtocolConnection(new StreamMessageReader(server.child.stdout!),
        new StreamMessageWriter(server.child.stdin!));
    const session = new Session(plan, server, connection, config);
    const middleware = clientOptions(() => config, undefined).middleware!.workspace!.configuration!;
    connection.onRequest(ConfigurationRequest.type, (params, token) => {
        session.configurationPulls.push(params);
        return middleware(params, token, () => params.items.map(() => null));
    });
    connection.onRequest(WorkDoneProgressCreateRequest.type, ({ token }) => {
        connection.onProgress(WorkDoneProgress.type, token, (value) => { session.progress.push(value); });
    });
    connection.onRequest(ApplyWorkspaceEditRequest.type, ({ edit }) => {
        session.appliedEdits.push(edit);
        return { applied: true };
    });
    connection.onNotification(ShowMessageNotification.type, (params) => { session.shownMessages.push(params); });
    connection.onNotification(LogMessageNotification.type, (params) => { session.logMessages.push(params.message); });
    connection.listen();
    return session;
}

/** `text` with non-overlapping `edits` applied (utf-16 positions, as VS Code applies them). */
export function applyEdits(text: string, edits: TextEdit[]): string {
    const lineStarts = [0];
    for (let index = 0; index < text.length; index++) {
        if (text[index] === '\n') {
            lineStarts.push(index + 1);
        }
    }
    const offset = ({ line, character }: { line: number; character: number }) => lineStarts[line] + character;
    const sorted = [...edits].sort((a, b) => offset(b.range.start) - offset(a.range.start));
    for (const edit of sorted) {
        text = text.slice(0, offset(edit.range.start)) + edit.newText + text.slice(offset(edit.range.end));
    }
    return text;
}
