/** The packaged extension in a real VS Code (code-server in headless Chromium) with the real coda-lsp on the
 * shipped model, used as a person uses it: type in a Python file until ghost text shows, accept it with Tab, run
 * "CoDA: Fill this block" on a `pass` body. The server is started through lspTap.js (coda.server.command), so the
 * test knows what VS Code asked and what coda-lsp answered. Screenshots, the LSP trace and code-server's log go to
 * vscode-client/e2e-results/. Needs setup.sh's install and coda-lsp.vsix (`make vscode-e2e` does both). */

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { CodeServer, EditorFolders, installExtension, requireInstalled } from './editor';
import { INLINE_COMPLETION, Position, TracedRequest, clientRequests, readTrace, samePosition } from './trace';
import { Workbench, waitFor } from './workbench';

const CLIENT_DIR = path.resolve(__dirname, '../../..');
const ROOT = path.resolve(CLIENT_DIR, '..');
const RESULTS = path.join(CLIENT_DIR, 'e2e-results');
const VSIX = path.join(CLIENT_DIR, 'coda-lsp.vsix');
const PYTHON = process.env.CODA_PYTHON ?? path.join(ROOT, '.venv', 'bin', 'python');
const MODEL = path.join(ROOT, 'models', 'coda-tiny');
const TRACE = path.join(RESULTS, 'lsp-trace.jsonl');
/** Loading the model and one infill take seconds on two idle cores, and ten times that on two busy ones. */
const SERVER_READY_MS = 300_000;
const COMPLETION_MS = 300_000;
const UI_MS = 60_000;

const SHAPES = 'import math\n\n\ndef area(radius):\n    pass\n\n\ndef circumference(radius):\n'
    + '    return 2 * math.pi * radius\n';
/** Typed at the end of the file, a piece at a time, until the model's answer survives the server's filters (the
 * shipped model writes junk, most of which they drop). VS Code indents each new line itself. */
const TYPED = ['\n\n\ndef volume(radius):\n', 'return ', 'radius\n'];
const AREA_HEAD = 'import math\n\n\ndef area(radius):\n';
const AREA_TAIL = '\n\n\ndef circumference(radius):\n    return 2 * math.pi * radius\n';

interface InlineItem {
    insertText: string;
    range?: { start: Position; end: Position };
}

/** The user's settings: coda-lsp from this checkout's venv (through the tap) on the shipped model; a quiet editor
 * that reaches nothing outside this machine. fp32 rather than auto (which times the formats at load and may pick
 * another on a busy machine) keeps the greedy completions, and so what this test sees, the same from run to run. */
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
function writeTapCommand(folder: string): string {
    const parts = [process.execPath, path.join(__dirname, 'lspTap.js'), PYTHON, TRACE];
    assert.ok(parts.every((part) => !part.includes("'")), 'a path with a quote');
    const file = path.join(folder, 'coda-lsp-tap');
    fs.writeFileSync(file, `#!/bin/sh\nexec ${parts.map((part) => `'${part}'`).join(' ')} "$@"\n`, { mode: 0o755 });
    return file;
}

function readChanged(file: string, before: string): Promise<string> {
    return waitFor(`${path.basename(file)} saved with changes`, UI_MS, () => {
        const text = fs.readFileSync(file, 'utf8');
        return Promise.resolve(text === before ? undefined : text);
    });
}

/** coda-lsp's answer to VS Code's automatic inline request at `cursor` (the last one: earlier ones were
 * superseded by keystrokes and cancelled). */
function inlineAnswerAt(cursor: Position): Promise<TracedRequest> {
    return waitFor(`coda-lsp's inline completion at ${cursor.line}:${cursor.character}`, COMPLETION_MS, () => {
        const answered = clientRequests(readTrace(TRACE)).filter((request) => request.method === INLINE_COMPLETION
            && samePosition(request.params.position, cursor) && request.errorCode === undefined
            && request.answeredAt !== undefined);
        return Promise.resolve(answered.at(-1));
    });
}

function offsetOf(text: string, position: Position): number {
    const lines = text.split('\n');
    return lines.slice(0, position.line).reduce((sum, line) => sum + line.length + 1, 0) + position.character;
}

describe('the extension in VS Code (code-server)', { timeout: 30 * 60_000 }, () => {
    let scratch: string;
    let shapes: string;
    let server: CodeServer | undefined;
    let workbench: Workbench | undefined;

    before(async () => {
        requireInstalled();
        assert.ok(fs.existsSync(VSIX), `${VSIX} is missing: make extension builds it`);
        fs.rmSync(RESULTS, { recursive: true, force: true });
        fs.mkdirSync(RESULTS, { recursive: true });
        scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'coda-vscode-e2e-'));
        const workspace = path.join(scratch, 'workspace');
        fs.mkdirSync(workspace);
        shapes = path.join(workspace, 'shapes.py');
        fs.writeFileSync(shapes, SHAPES);
        const folders: EditorFolders = {
            userData: path.join(scratch, 'user-data'),
            extensions: path.join(scratch, 'extensions'),
            config: path.join(scratch, 'code-server.yaml'),
            log: path.join(RESULTS, 'code-server.log'),
        };
        fs.mkdirSync(path.join(folders.userData, 'User'), { recursive: true });
        fs.writeFileSync(path.join(folders.userData, 'User', 'settings.json'),
            JSON.stringify(userSettings(writeTapCommand(scratch)), null, 2));
        installExtension(folders, VSIX);
        server = await CodeServer.start(folders, workspace);
        workbench = await Workbench.open(server.folderUrl(workspace));
    });

    after(async () => {
        await workbench?.close();
        await server?.stop();
        fs.rmSync(scratch, { recursive: true, force: true });
    });

    /** Run a step; on failure leave a screenshot of the moment beside the others. */
    async function step(name: string, body: (bench: Workbench) => Promise<void>): Promise<void> {
        assert.ok(workbench, 'the workbench did not open');
        try {
            await body(workbench);
        } catch (error) {
            await workbench.screenshot(path.join(RESULTS, `failed-${name}.png`)).catch(() => undefined);
            throw error;
        }
    }

    test('opening a Python file starts coda-lsp, and the status bar says when the model is ready', () =>
        step('ready', async (bench) => {
            await bench.openFile('shapes.py', UI_MS);
            await waitFor('the CoDA status "ready"', SERVER_READY_MS,
                async () => (await bench.codaStatus()) === 'CoDA' ? true : undefined,
                async () => `; the status bar says "${await bench.codaStatus()}", notifications: `
                    + JSON.stringify(await bench.notifications()));
            await bench.screenshot(path.join(RESULTS, '1-ready.png'));
        }));

    test('typing shows the model\'s ghost text, Tab accepts it, and the status bar shows its latency', () =>
        step('ghost-text', async (bench) => {
            const { page } = bench;
            await page.keyboard.press('Control+End');
            let item: InlineItem | undefined;
            let cursor: Position | undefined;
            for (const piece of TYPED) {
                await page.keyboard.type(piece, { delay: 50 });
                cursor = await bench.cursor();
                const answer = await inlineAnswerAt(cursor);
                item = (answer.result as { items?: InlineItem[] } | null)?.items?.[0];
                if (item) {
                    break;
                }
            }
            assert.ok(item && cursor, `coda-lsp answered no ghost text after typing ${JSON.stringify(TYPED)}`);
            const { insertText } = item;
            assert.deepEqual(item.range?.start, cursor, 'the item does not start at the cursor');
            const shown = await waitFor('the ghost text', UI_MS, async () => (await bench.ghostText()) || undefined);
            await bench.screenshot(path.join(RESULTS, '2-ghost-text.png'));
            assert.equal(shown.split('\n')[0], insertText.split('\n')[0], 'the ghost text is not what coda-lsp sent');
            await waitFor('a latency in the status bar', UI_MS,
                async () => /^CoDA \d+ ms$/.test(await bench.codaStatus()) ? true : undefined,
                async () => `; it says "${await bench.codaStatus()}"`);

            await page.keyboard.press('Tab');
            // VS Code asks again at the new cursor, so more ghost text may follow: the cursor moving says accepted.
            const at = cursor;
            await waitFor('the ghost text accepted', UI_MS,
                async () => (await bench.isDirty()) && !samePosition(await bench.cursor(), at) ? true : undefined);
            await page.keyboard.press('Control+S');
            const saved = await readChanged(shapes, SHAPES);
            await bench.screenshot(path.join(RESULTS, '3-accepted.png'));
            assert.ok(saved.startsWith(SHAPES), saved);
            assert.equal(saved.slice(offsetOf(saved, cursor)), insertText,
                'the file does not end with the accepted completion at the cursor');
        }));

    test('"CoDA: Fill this block" on a `pass` body replaces the body and nothing else', () =>
        step('fill', async (bench) => {
            const { page } = bench;
            const before = fs.readFileSync(shapes, 'utf8');
            assert.ok(before.startsWith(`${AREA_HEAD}    pass${AREA_TAIL}`));
            await page.keyboard.press('Control+Home');
            for (let line = 1; line < 5; line++) {
                await page.keyboard.press('ArrowDown');
            }
            await page.keyboard.press('End');  // after `pass`
            await bench.runCommand('CoDA: Fill this block', UI_MS);
            await waitFor('the block filled', COMPLETION_MS, async () => {
                const messages = await bench.notifications();
                if (messages.some((message) => message.startsWith('CoDA'))) {
                    throw new Error(`Fill this block said: ${messages.join(' | ')}`);
                }
                return (await bench.isDirty()) ? true : undefined;
            }, async () => `; the status bar says "${await bench.codaStatus()}"`);
            await page.keyboard.press('Control+S');
            const saved = await readChanged(shapes, before);
            await bench.screenshot(path.join(RESULTS, '4-filled.png'));
            assert.ok(saved.startsWith(AREA_HEAD), saved);
            const tail = saved.indexOf(AREA_TAIL);
            assert.ok(tail > AREA_HEAD.length, `the code after the block changed:\n${saved}`);
            const body = saved.slice(AREA_HEAD.length, tail);
            assert.notEqual(body.trim(), 'pass', 'the body is still `pass`');
            assert.ok(body.trim().length > 0, 'the body is empty');
            assert.equal(saved.slice(tail), before.slice(before.indexOf(AREA_TAIL)), 'the rest of the file changed');
        }));
});
