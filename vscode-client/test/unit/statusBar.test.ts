import '../support/register';

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { StatusBar } from '../../src/statusBar';
import { ThemeColor, statusBarItems } from '../support/vscode';

test('the status bar item shows the state, turns red on errors and opens the log when clicked', () => {
    const bar = new StatusBar('coda.showLog');
    const item = statusBarItems.at(-1)!;
    assert.ok(item.visible);
    assert.equal(item.command, 'coda.showLog');
    bar.show({ kind: 'starting' }, true);
    assert.equal(item.text, '$(sync~spin) CoDA: starting');
    assert.equal(item.backgroundColor, undefined);
    bar.show({ kind: 'failed', message: 'no coda-lsp' }, true);
    const color: unknown = item.backgroundColor;
    assert.ok(color instanceof ThemeColor && color.id === 'statusBarItem.errorBackground');
    bar.dispose();
    assert.ok(item.disposed);
});
