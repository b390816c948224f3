/** The packaged extension in a real VS Code (code-server in headless Chromium) with the real coda-lsp on the
 * shipped model, used as a person uses it: type in a Python file until ghost text shows, accept it with Tab, run
 * "CoDA: Fill this block" on a `pass` body. The server is started through lspTap.js (coda.server.command), so the
 * test knows what VS Code asked and what coda-lsp answered. Screenshots, the LSP trace and code-server's log go to
 * vscode-client/e2e-results/. Needs setup.sh's install and coda-lsp.vsix (`make vscode-e2e` does both). */

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { COMPLETION_MS, RESULTS, UI_MS, VsCodeSession } from './session';
import { Position, readTrace, samePosition } from './trace';
import { Workbench, waitFor } from './workbench';

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

function readChanged(file: string, before: string): Promise<string> {
    return waitFor(`${path.basename(file)} saved with changes`, UI_MS, () => {
        const text = fs.readFileSync(file, 'utf8');
        return Promise.resolve(text === before ? undefined : text);
    });
}

/** The first non-blank line, trimmed. When the answer comes on a line holding only its indentation (the model
 * may answer only after the last typed piece's line break), the page's inline ghost-text element reads empty
 * while the suggestion's first line shows (a failed run's screenshot): compare what is written, not where. */
function firstText(text: string): string {
    return text.split('\n').map((line) => line.trim()).find((line) => line !== '') ?? '';
}

function offsetOf(text: string, position: Position): number {
    const lines = text.split('\n');
    return lines.slice(0, position.line).reduce((sum, line) => sum + line.length + 1, 0) + position.character;
}

describe('the extension in VS Code (code-server)', { timeout: 30 * 60_000 }, () => {
    let session: VsCodeSession | undefined;
    let shapes: string;

    before(async () => {
        fs.rmSync(RESULTS, { recursive: true, force: true });
        session = await VsCodeSession.start({ 'shapes.py': SHAPES }, RESULTS);
        shapes = path.join(session.workspace, 'shapes.py');
    });

    after(async () => {
        await session?.stop();
    });

    /** Run a step; on failure leave a screenshot of the moment beside the others. */
    async function step(name: string, body: (bench: Workbench, active: VsCodeSession) => Promise<void>): Promise<void> {
        assert.ok(session, 'VS Code did not start');
        const { workbench } = session;
        try {
            await body(workbench, session);
        } catch (error) {
            await workbench.screenshot(path.join(RESULTS, `failed-${name}.png`)).catch(() => undefined);
            throw error;
        }
    }

    test('opening a Python file starts coda-lsp, and the status bar says when the model is ready', () =>
        step('ready', async (bench, active) => {
            await active.openWhenReady('shapes.py');
            await bench.screenshot(path.join(RESULTS, '1-ready.png'));
            // The extension tells the server where the cursor is, so it prepares that context ahead of typing.
            const focused = await waitFor('coda/didFocus for shapes.py', UI_MS, () => Promise.resolve(
                readTrace(active.trace).find(({ from, message }) => from === 'client'
                    && message.method === 'coda/didFocus' && JSON.stringify(message.params).includes('shapes.py'))));
            assert.ok(focused);
        }));

    test('typing shows the model\'s ghost text, Tab accepts it, and the status bar shows its latency', () =>
        step('ghost-text', async (bench, active) => {
            const { page } = bench;
            await page.keyboard.press('Control+End');
            let item: InlineItem | undefined;
            let cursor: Position | undefined;
            for (const piece of TYPED) {
                await page.keyboard.type(piece, { delay: 50 });
                cursor = await bench.cursor();
                const answer = await active.inlineAnswerAt(cursor);
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
            assert.equal(firstText(shown), firstText(insertText), 'the ghost text is not what coda-lsp sent');
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
