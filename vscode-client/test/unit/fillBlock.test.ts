import assert from 'node:assert/strict';
import { test } from 'node:test';

import { CodeAction, CodeActionKind } from 'vscode-languageserver-protocol';

import { FILL_TITLE, Requester, pickFillAction, requestFill } from '../../src/fillBlock';

const range = { start: { line: 1, character: 4 }, end: { line: 1, character: 4 } };
const edit = { changes: { 'file:///a.py': [{ range, newText: 'return 1' }] } };

/** Answers codeAction with `actions` and codeAction/resolve with `resolved`, recording the methods asked. */
function requester(actions: unknown, resolved?: CodeAction): Requester & { methods: string[] } {
    const methods: string[] = [];
    return {
        methods,
        sendRequest<R>(method: string): Promise<R> {
            methods.push(method);
            return Promise.resolve((method === 'textDocument/codeAction' ? actions : resolved) as R);
        },
    };
}

test('only the server\'s fill action is picked', () => {
    const fill = { title: FILL_TITLE, kind: CodeActionKind.RefactorRewrite };
    assert.equal(pickFillAction([{ title: 'Other', command: 'x' }, { title: 'Organize', kind: 'source' }, fill]), fill);
    assert.equal(pickFillAction(null), undefined);
});

test('a lazy action is resolved into its edit; an eager one is not asked twice', async () => {
    const lazy = requester([{ title: FILL_TITLE, kind: CodeActionKind.RefactorRewrite, data: {} }],
        { title: FILL_TITLE, kind: CodeActionKind.RefactorRewrite, edit });
    assert.deepEqual(await requestFill(lazy, 'file:///a.py', range), { kind: 'edit', edit });
    assert.deepEqual(lazy.methods, ['textDocument/codeAction', 'codeAction/resolve']);
    const command = { title: FILL_TITLE, command: 'coda.fillBlock', arguments: ['file:///a.py', range] };
    const eager = requester([{ title: FILL_TITLE, kind: CodeActionKind.RefactorRewrite, command }]);
    assert.deepEqual(await requestFill(eager, 'file:///a.py', range), { kind: 'command', command });
    assert.deepEqual(eager.methods, ['textDocument/codeAction']);
});

test('no action: nothing to fill; a resolve without an edit: the model wrote nothing', async () => {
    assert.deepEqual(await requestFill(requester([]), 'file:///a.py', range), { kind: 'none' });
    const empty = requester([{ title: FILL_TITLE, kind: CodeActionKind.RefactorRewrite, data: {} }],
        { title: FILL_TITLE, kind: CodeActionKind.RefactorRewrite });
    assert.deepEqual(await requestFill(empty, 'file:///a.py', range), { kind: 'empty' });
});
