/** The extension's Controller with the real vscode-languageclient (on the vscode stand-in) and the real coda-lsp:
 * a start that fails shows one message naming the setting and the status bar says so; after the setting is fixed,
 * "Restart server" brings the model up and the status bar shows it ready. */

import '../support/register';

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { after, before, test } from 'node:test';

import { Controller } from '../../src/client';
import { StatusBar } from '../../src/statusBar';
import { Checkpoints, FAST_SETTINGS, HUB_REPO_ID, PYTHON, writeCheckpoints } from '../support/session';
import * as vscode from '../support/vscode';

let checkpoints: Checkpoints;
let controller: Controller;

before(() => {
    checkpoints = writeCheckpoints();
    process.env.HF_HUB_CACHE = checkpoints.hubCache;  // what the extension's server process inherits
    process.env.HF_HUB_OFFLINE = '1';
});
after(async () => {
    await controller?.stopClient();
    if (checkpoints) fs.rmSync(checkpoints.root, { recursive: true, force: true });
});

async function until(condition: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!condition()) {
        assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
    }
}

test('a coda-lsp that is not there: one message naming the setting; fixed and restarted: ready', { timeout: 120_000 },
    async () => {
        Object.assign(vscode.userSettings, { 'server.command': '/no/such/coda-lsp', model: HUB_REPO_ID, device: 'cpu',
            ...FAST_SETTINGS });
        const output = vscode.window.createOutputChannel('CoDA');
        const bar = new StatusBar('coda.showLog');
        const item = vscode.statusBarItems.at(-1)!;
        controller = new Controller(output, bar);
        await controller.start();
        assert.equal(item.text, '$(error) CoDA: not running');
        assert.equal(vscode.shownMessages.length, 1, JSON.stringify(vscode.shownMessages));
        const [kind, text, ...buttons] = vscode.shownMessages[0];
        assert.equal(kind, 'error');
        assert.match(text, /"\/no\/such\/coda-lsp" was not found: set coda\.server\.command/);
        assert.deepEqual(buttons, ['Open Setting', 'Show Log']);
        assert.ok(item.tooltip?.startsWith(text));

        // the user follows the message: a Python that has coda-lsp instead, then "CoDA: Restart server"
        Object.assign(vscode.userSettings, { 'server.command': '', 'server.python': PYTHON });
        await controller.restart();
        await until(() => item.text.startsWith('$(check) CoDA'), 'the status bar to say ready');
        assert.match(item.tooltip ?? '', /models--coda-tests--CoDA-tiny-random/);
        assert.equal(item.backgroundColor, undefined);
        assert.equal(vscode.shownMessages.length, 1);  // nothing new: every setting was accepted

        await controller.toggleInlineCompletions();
        assert.equal(vscode.userSettings['inlineCompletions.enabled'], false);
        assert.match(item.text, /\(inline off\)$/);
    });

function freePort(): Promise<number> {
    return new Promise((resolve) => {
        const probe = net.createServer().listen(0, '127.0.0.1', () => {
            const { port } = probe.address() as net.AddressInfo;
            probe.close(() => resolve(port));
        });
    });
}

/** Whether something listens on `port`, read from /proc/net/tcp: `coda-lsp --tcp` serves one client and exits
 * when it leaves, so a test connection would use it up. */
function isListening(port: number): boolean {
    const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
    return fs.readFileSync('/proc/net/tcp', 'utf8').split('\n')
        .some((line) => line.trim().split(/\s+/)[1]?.endsWith(`:${hexPort}`) && line.trim().split(/\s+/)[3] === '0A');
}

test('coda.server.tcp: nobody listening names the setting; a running coda-lsp --tcp gets ready', { timeout: 120_000 },
    async (context) => {
        if (!fs.existsSync('/proc/net/tcp')) {
            context.skip('reads listening ports from /proc/net/tcp (Linux)');
            return;
        }
        await controller?.stopClient();
        const port = await freePort();
        for (const key of Object.keys(vscode.userSettings)) {
            delete vscode.userSettings[key];
        }
        Object.assign(vscode.userSettings, { 'server.tcp': `127.0.0.1:${port}`, ...FAST_SETTINGS });
        vscode.shownMessages.splice(0);
        const bar = new StatusBar('coda.showLog');
        const item = vscode.statusBarItems.at(-1)!;
        controller = new Controller(vscode.window.createOutputChannel('CoDA'), bar);
        await controller.start();
        assert.equal(vscode.shownMessages.length, 1);
        assert.match(vscode.shownMessages[0][1], /^No coda-lsp answers at 127\.0\.0\.1:\d+ \(ECONNREFUSED\).*coda\.server\.tcp\.$/);

        const server = spawn(PYTHON, ['-m', 'coda_lsp', '--tcp', `127.0.0.1:${port}`, '--model', checkpoints.folder,
            '--device', 'cpu', '--log-level', 'WARNING'], { stdio: 'ignore' });
        try {
            await until(() => isListening(port), 'coda-lsp --tcp to listen', 30_000);
            await controller.restart();
            await until(() => item.text.startsWith('$(check) CoDA'), 'the status bar to say ready');
            assert.equal(vscode.shownMessages.length, 1);
        } finally {
            await controller.stopClient();
            server.kill();
        }
    });
