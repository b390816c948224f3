import '../support/register';

import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as vscode from 'vscode';

import { clientOptions } from '../../src/client';
import { SERVER_SETTINGS } from '../../src/settings';
import { fakeConfiguration } from '../support/config';

const token = {} as vscode.CancellationToken;

test('documents of the enabled languages, on disk or untitled', () => {
    const options = clientOptions(() => fakeConfiguration({ enabledLanguages: ['python', 'rust'] }), undefined);
    assert.deepEqual(options.documentSelector, [{ language: 'python', scheme: 'file' },
        { language: 'python', scheme: 'untitled' }, { language: 'rust', scheme: 'file' },
        { language: 'rust', scheme: 'untitled' }]);
});

test('initializationOptions and workspace/configuration carry the server settings and nothing else', async () => {
    let config = fakeConfiguration({ maxTokens: 12, model: '/m' });
    const options = clientOptions(() => config, undefined);
    const init = options.initializationOptions as { coda: Record<string, unknown> };
    assert.deepEqual(Object.keys(init.coda), [...SERVER_SETTINGS]);
    assert.equal(init.coda.maxTokens, 12);
    config = fakeConfiguration({ maxTokens: 20 });  // a changed setting is what the next pull answers
    const pull = options.middleware!.workspace!.configuration!;
    const answer = await pull({ items: [{ section: 'coda' }] }, token, () => assert.fail('coda is answered here'));
    assert.equal((answer as Record<string, unknown>[])[0].maxTokens, 20);
    let delegated = false;
    await pull({ items: [{ section: 'editor' }] }, token, () => { delegated = true; return [null]; });
    assert.ok(delegated);
});

test('the toggle stops automatic inline requests; an explicit one still asks, and refreshes the status', async () => {
    let enabled = false;
    let refreshed = 0;
    const options = clientOptions(() => fakeConfiguration({ 'inlineCompletions.enabled': enabled }), undefined,
        () => { refreshed += 1; });
    const provide = options.middleware!.provideInlineCompletionItems!;
    const items = [{ insertText: 'x' }] as vscode.InlineCompletionItem[];
    const next = () => Promise.resolve(items);
    const ask = (triggerKind: number) => provide({} as vscode.TextDocument, {} as vscode.Position,
        { triggerKind } as vscode.InlineCompletionContext, token, next);
    assert.equal(await ask(vscode.InlineCompletionTriggerKind.Automatic), null);
    assert.equal(await ask(vscode.InlineCompletionTriggerKind.Invoke), items);
    enabled = true;
    assert.equal(await ask(vscode.InlineCompletionTriggerKind.Automatic), items);
    assert.equal(refreshed, 2);
});

test('completion items are never asked of the server: VS Code gets CoDA\'s completions as ghost text', async () => {
    const options = clientOptions(() => fakeConfiguration(), undefined);
    const provide = options.middleware!.provideCompletionItem!;
    const answer = await provide({} as vscode.TextDocument, {} as vscode.Position, {} as vscode.CompletionContext,
        token, () => assert.fail('textDocument/completion sent to the server'));
    assert.equal(answer, null);
});
