/** One VS Code session as the end-to-end test and the latency bench run it: a scratch workspace, the user's
 * settings, the packaged extension installed with `code-server --install-extension`, code-server started, the
 * workbench open in Chromium, and coda-lsp (this checkout's venv, the shipped model) started by the extension
 * through lspTap.js, which records the LSP traffic. */

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { CodeServer, EditorFolders, installExtension, requireInstalled } from './editor';
import { INLINE_COMPLETION, Position, TracedRequest, clientRequests, readTrace, samePosition } from './trace';
import { Workbench, waitFor } from './workbench';

export const CLIENT_DIR = path.resolve(__dirname, '../../..');
export const ROOT = path.resolve(CLIENT_DIR, '..');
export const RESULTS = path.join(CLIENT_DIR, 'e2e-results');
export const VSIX = path.join(CLIENT_DIR, 'coda-lsp.vsix');
export const PYTHON = process.env.CODA_PYTHON ?? path.join(ROOT, '.venv', 'bin', 'python');
export const MODEL = path.join(ROOT, 'models', 'coda-tiny');
/** Loading the model and one infill take seconds on two idle cores, and ten times that on two busy ones. */
export const SERVER_READY_MS = 300_000;
export const COMPLETION_MS = 300_000;
export const UI_MS = 60_000;

/** The user's settings: coda-lsp through the tap on the shipped model; a quiet editor that reaches nothing outside
 * this machine. fp32 rather than auto (which times the formats at load and may pick another on a busy machine)
 * keeps the greedy completions, and so what a run sees, the same from run to run. */
function userSettings(serverCommand: string): Record<string, unknown> {
    return {
        'coda.server.command': serverCommand,
        'coda.model': MODEL,
        'coda.dtype': 'fp32',
        'files.autoSave': 'off',  // code-server's default saves after a second; the test saves when it means to
        'workbench.startupEditor': 'none',
        'workbench.secondarySideBar.defaultVisibility': 'hidden',
        'workbench.tips.enabled': false,
        'telemetry.telemetryLevel': 'off',
        'update.mode': 'none',
        'extensions.autoUpdate': false,
        'extensions.autoCheckUpdates': false,
        'chat.disableAIFeatures': true,
        'git.enabled': false,
        'security.workspace.trust.enabled': false,
    };
}

/** An executable that runs lspTap.js with this Node: coda.server.command takes no arguments of its own. */
function writeTapCommand(folder: string, trace: string): string {
    const parts = [process.execPath, path.join(__dirname, 'lspTap.js'), PYTHON, trace];
    if (parts.some((part) => part.includes("'"))) {
        throw new Error(`a path with a quote: ${parts.join(' ')}`);
    }
    const file = path.join(folder, 'coda-lsp-tap');
    fs.writeFileSync(file, `#!/bin/sh\nexec ${parts.map((part) => `'${part}'`).join(' ')} "$@"\n`, { mode: 0o755 });
    return file;
}

export class VsCodeSession {
    private constructor(readonly workspace: string, readonly trace: string, private readonly scratch: string,
                        private readonly server: CodeServer, readonly workbench: Workbench) {}

    /** `files` (name -> text) in a new workspace folder; the trace and code-server's log go to `resultsDir`;
     * `settings` go over the user settings above. */
    static async start(files: Record<string, string>, resultsDir: string,
                       settings: Record<string, unknown> = {}): Promise<VsCodeSession> {
        requireInstalled();
        if (!fs.existsSync(VSIX)) {
            throw new Error(`${VSIX} is missing: make extension builds it`);
        }
        fs.mkdirSync(resultsDir, { recursive: true });
        const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'coda-vscode-e2e-'));
        const workspace = path.join(scratch, 'workspace');
        fs.mkdirSync(workspace);
        for (const [name, text] of Object.entries(files)) {
            fs.writeFileSync(path.join(workspace, name), text);
        }
        const trace = path.join(resultsDir, 'lsp-trace.jsonl');
        fs.rmSync(trace, { force: true });
        const folders: EditorFolders = {
            userData: path.join(scratch, 'user-data'),
            extensions: path.join(scratch, 'extensions'),
            config: path.join(scratch, 'code-server.yaml'),
            log: path.join(resultsDir, 'code-server.log'),
        };
        fs.mkdirSync(path.join(folders.userData, 'User'), { recursive: true });
        fs.writeFileSync(path.join(folders.userData, 'User', 'settings.json'),
            JSON.stringify({ ...userSettings(writeTapCommand(scratch, trace)), ...settings }, null, 2));
        installExtension(folders, VSIX);
        const server = await CodeServer.start(folders, workspace);
        try {
            return new VsCodeSession(workspace, trace, scratch, server,
                await Workbench.open(server.folderUrl(workspace)));
        } catch (error) {
            await server.stop();
            throw error;
        }
    }

    async stop(): Promise<void> {
        await this.workbench.close();
        await this.server.stop();
        fs.rmSync(this.scratch, { recursive: true, force: true });
    }

    /** Open `name` and wait until the status bar says the model is ready. */
    async openWhenReady(name: string): Promise<void> {
        const bench = this.workbench;
        await bench.openFile(name, UI_MS);
        await waitFor('the CoDA status "ready"', SERVER_READY_MS,
            async () => (await bench.codaStatus()) === 'CoDA' ? true : undefined,
            async () => `; the status bar says "${await bench.codaStatus()}", notifications: `
                + JSON.stringify(await bench.notifications()));
    }

    /** coda-lsp's answer to VS Code's automatic inline request at `cursor` (the last one: earlier ones were
     * superseded by keystrokes and cancelled). */
    inlineAnswerAt(cursor: Position): Promise<TracedRequest> {
        return waitFor(`coda-lsp's inline completion at ${cursor.line}:${cursor.character}`, COMPLETION_MS, () => {
            const answered = clientRequests(readTrace(this.trace)).filter((request) =>
                request.method === INLINE_COMPLETION && samePosition(request.params.position, cursor)
                && request.errorCode === undefined && request.answeredAt !== undefined);
            return Promise.resolve(answered.at(-1));
        });
    }
}
