/** The extension's Controller with the real vscode-languageclient (on the vscode stand-in) and the real coda-lsp:
 * a start that fails shows one message naming the setting and the status bar says so; after the setting is fixed,
 * "Restart server" brings the model up and the status bar shows it ready. */

import '../support/register';

import assert from 'node:assert/strict';
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
after(() => controller?.stopClient());

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
