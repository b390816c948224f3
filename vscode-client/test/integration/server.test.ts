/** The real coda-lsp on a tiny checkpoint, launched and configured as the extension does it: initialize with
 * vscode-languageclient's capabilities and the extension's options, inline completion, "Fill this block" resolved
 * and applied, status and progress; then each way a start can fail, with the setting the message names. */

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { InlineCompletionList, InlineCompletionTriggerKind, MessageType } from 'vscode-languageserver-protocol';

import { Requester, requestFill } from '../../src/fillBlock';
import { exitFailure, initializeTimeout, withTimeout } from '../../src/server';
import { statusBarText, userMessage } from '../../src/status';
import {
    Checkpoints,
    FAST_SETTINGS,
    HUB_REPO_ID,
    Session,
    applyEdits,
    extensionCapabilities,
    launch,
    writeCheckpoints,
} from '../support/session';

const TIMEOUT = { timeout: 120_000 };
// Files end mid-edit (an open bracket), as while typing: the server's parse filter then keeps the random model's text.
const INLINE_TEXT = 'def add(a, b):\n    total = \n    return total\n\nbroken = (\n';
const FILL_TEXT = 'def mean(values):\n    pass\n\n\nprint(mean([1, 2]))\nbroken = (\n';

let checkpoints: Checkpoints;
let scratch: string;

before(() => {
    checkpoints = writeCheckpoints();
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'coda-vscode-scratch-'));
});
after(() => {
    for (const folder of [checkpoints?.root, scratch]) {
        if (folder) fs.rmSync(folder, { recursive: true, force: true });
    }
});

function withCache(hubCache: string): NodeJS.ProcessEnv {
    return { ...process.env, HF_HUB_CACHE: hubCache, HF_HUB_OFFLINE: '1' };
}

function offsetOf(text: string, line: number, character: number): number {
    return text.split('\n').slice(0, line).reduce((sum, row) => sum + row.length + 1, 0) + character;
}

describe('the extension against a running server', TIMEOUT, () => {
    let session: Session;
    const uriOf = (name: string) => `file://${scratch}/${name}`;

    before(async () => {
        session = await launch({ model: HUB_REPO_ID, device: 'cpu', ...FAST_SETTINGS }, withCache(checkpoints.hubCache));
    });
    after(() => session.close());

    test('initialize: inline completion, the resolvable fill action and utf-16 positions', async () => {
        const sent = extensionCapabilities(session.config);
        assert.ok(sent.textDocument?.inlineCompletion, 'vscode-languageclient 10+ registers inline completion');
        assert.ok(sent.textDocument?.codeAction?.resolveSupport?.properties.includes('edit'));
        assert.equal(sent.window?.workDoneProgress, true);
        assert.equal(sent.workspace?.configuration, true);
        const { capabilities, serverInfo } = await session.initialize();
        assert.equal(serverInfo?.name, 'coda-lsp');
        assert.ok(capabilities.inlineCompletionProvider);
        assert.deepEqual(capabilities.codeActionProvider, { codeActionKinds: ['refactor.rewrite'], resolveProvider: true });
        assert.ok(capabilities.positionEncoding === undefined || capabilities.positionEncoding === 'utf-16');
    });

    test('the model loads with progress, then the status bar says ready', async () => {
        const status = await session.settled();
        assert.equal(status.state, 'ready', status.error ?? '');
        assert.ok(status.modelPath.includes(path.join('models--coda-tests--CoDA-tiny-random', 'snapshots')));
        const [begin, end] = session.progress as { kind: string; title?: string; message?: string }[];
        assert.equal(begin.kind, 'begin');
        assert.match(begin.title ?? '', /^Loading CoDA model/);
        assert.deepEqual([end.kind, end.message], ['end', 'ready']);
        assert.equal(statusBarText({ kind: 'running', status }, true).text, '$(check) CoDA');
    });

    test('the server pulled the coda settings through the extension\'s middleware', async () => {
        assert.ok(session.configurationPulls.length >= 1);
        const settings = (await session.status() as unknown as { settings: { generation: { max_tokens: number } } }).settings;
        assert.equal(settings.generation.max_tokens, FAST_SETTINGS.maxTokens);
        assert.deepEqual(session.shownMessages, []);  // every value the extension sent was accepted
    });

    test('an inline completion inserts at the cursor and the status bar shows its latency', async () => {
        const uri = uriOf('inline.py');
        await session.connection.sendNotification('textDocument/didOpen',
            { textDocument: { uri, languageId: 'python', version: 1, text: INLINE_TEXT } });
        const cursor = { line: 1, character: '    total = '.length };
        const result = await session.connection.sendRequest<InlineCompletionList>('textDocument/inlineCompletion', {
            textDocument: { uri }, position: cursor,
            context: { triggerKind: InlineCompletionTriggerKind.Automatic },
        });
        assert.equal(result.items.length, 1);
        const [item] = result.items;
        assert.deepEqual(item.range, { start: cursor, end: cursor });
        const inserted = typeof item.insertText === 'string' ? item.insertText : item.insertText.value;
        assert.ok(inserted.trim() && !inserted.includes('\n'));
        const at = offsetOf(INLINE_TEXT, cursor.line, cursor.character);
        const buffer = applyEdits(INLINE_TEXT, [{ range: { start: cursor, end: cursor }, newText: inserted }]);
        assert.equal(buffer, INLINE_TEXT.slice(0, at) + inserted + INLINE_TEXT.slice(at));
        const status = await session.status();
        assert.ok(status.latency.count >= 1);
        assert.match(statusBarText({ kind: 'running', status }, true).text, /^\$\(check\) CoDA \d+ ms$/);
    });

    test('"Fill this block": the action is listed lazily, resolved, and its edit fills the body', async () => {
        const uri = uriOf('fill.py');
        await session.connection.sendNotification('textDocument/didOpen',
            { textDocument: { uri, languageId: 'python', version: 1, text: FILL_TEXT } });
        const methods: string[] = [];
        const client: Requester = {
            sendRequest: <R>(method: string, params: unknown) => {
                methods.push(method);
                return session.connection.sendRequest<R>(method, params);
            },
        };
        const cursor = { line: 0, character: 'def mean(values):'.length };
        const result = await requestFill(client, uri, { start: cursor, end: cursor });
        assert.deepEqual(methods, ['textDocument/codeAction', 'codeAction/resolve']);
        assert.equal(result.kind, 'edit');
        const edits = result.kind === 'edit' ? result.edit.changes?.[uri] ?? [] : [];
        const filled = applyEdits(FILL_TEXT, edits);
        const [head, rest] = filled.split('def mean(values):\n');
        const [body, after] = rest.split('\n\n\nprint(');
        assert.equal(head, '');
        assert.ok(body.trim() && body.split('\n')[0].trim() !== 'pass', body);
        assert.ok(body.split('\n').every((line) => !line.trim() || line.startsWith('    ')), body);
        assert.equal(after, FILL_TEXT.split('\n\n\nprint(')[1]);
    });
});

describe('a server that cannot start, and the setting each message names', TIMEOUT, () => {
    test('a hub id that was never downloaded: the server exits with the download command', async () => {
        const session = await launch({ model: 'Salesforce/CoDA-v0-Instruct' }, withCache(path.join(scratch, 'empty-cache')));
        const code = await session.exited;
        const failure = exitFailure(session.plan, code, session.server.stderrTail());
        assert.equal(failure.setting, 'coda.model');
        assert.match(failure.message, /huggingface-cli download Salesforce\/CoDA-v0-Instruct/);
        await session.close();
    });

    test('an interpreter without coda-lsp names coda.server.python', async (context) => {
        const system = '/usr/bin/python3';
        if (!fs.existsSync(system) || spawnSync(system, ['-c', 'import coda_lsp']).status === 0) {
            context.skip('needs a system python3 without coda-lsp');
            return;
        }
        const session = await launch({ 'server.python': system });
        const code = await session.exited;
        const failure = exitFailure(session.plan, code, session.server.stderrTail());
        assert.equal(failure.setting, 'coda.server.python');
        assert.match(failure.message, /has no coda-lsp installed/);
        await session.close();
    });

    test('a command that never answers initialize times out naming coda.server.command', async () => {
        const hang = path.join(scratch, 'hangs');
        fs.writeFileSync(hang, '#!/bin/sh\nexec sleep 60\n', { mode: 0o755 });
        const session = await launch({ 'server.command': hang });
        await assert.rejects(withTimeout(session.initialize(), 1_000, () => initializeTimeout(session.plan, 1_000)),
            (error: unknown) => error instanceof Error && 'setting' in error && error.setting === 'coda.server.command');
        session.server.child.kill();
        await session.close();
    });

    test('a model that fails to load, and a setting of the wrong type: one message each, naming the setting',
        async () => {
            const broken = path.join(scratch, 'broken-model');
            fs.mkdirSync(broken, { recursive: true });
            fs.writeFileSync(path.join(broken, 'config.json'), '{not json');
            const session = await launch({ model: broken, device: 'cpu', maxTokens: 'many' });
            await session.initialize();
            const status = await session.settled();
            assert.equal(status.state, 'error');
            assert.equal(statusBarText({ kind: 'running', status }, true).text, '$(error) CoDA: model error');
            const shown = session.shownMessages.map((message) => ({ type: message.type, ...userMessage(message.message) }));
            const loadFailure = shown.filter((message) => message.type === MessageType.Error);
            assert.equal(loadFailure.length, 1);
            assert.equal(loadFailure[0].setting, 'coda.model');
            assert.match(loadFailure[0].text, /config\.json/);
            const wrongType = shown.filter((message) => message.type === MessageType.Warning);
            assert.deepEqual(wrongType.map((message) => message.setting), ['coda.maxTokens']);
            await session.close();
        });
});
