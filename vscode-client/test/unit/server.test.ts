import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';

import {
    LaunchPlan,
    exitFailure,
    initializeTimeout,
    interpreterOf,
    launchPlan,
    spawnServer,
    withTimeout,
} from '../../src/server';
import { StartFailure, readLaunchSettings } from '../../src/settings';
import { fakeConfiguration } from '../support/config';

const plan = (values: Record<string, unknown>): LaunchPlan => launchPlan(readLaunchSettings(fakeConfiguration(values)));

test('tcp wins, then the command, then the Python interpreter, then coda-lsp from PATH', () => {
    assert.deepEqual(plan({ 'server.tcp': '127.0.0.1:2087', 'server.command': '/x/coda-lsp' }),
        { kind: 'tcp', host: '127.0.0.1', port: 2087 });
    assert.deepEqual(plan({ 'server.command': '/x/coda-lsp', 'server.python': '/usr/bin/python3', model: 'm' }),
        { kind: 'process', command: '/x/coda-lsp', args: ['--stdio', '--model', 'm'], setting: 'coda.server.command' });
    assert.deepEqual(plan({ 'server.python': '/no/such/python' }),
        { kind: 'process', command: '/no/such/python', args: ['-m', 'coda_lsp', '--stdio'], setting: 'coda.server.python' });
    assert.deepEqual(plan({}), { kind: 'process', command: 'coda-lsp', args: ['--stdio'], setting: 'coda.server.command' });
});

test('a virtual environment folder means its interpreter', () => {
    const venv = fs.mkdtempSync(path.join(os.tmpdir(), 'coda-venv-'));
    assert.equal(interpreterOf(venv, 'linux'), path.join(venv, 'bin', 'python'));
    assert.equal(interpreterOf(venv, 'win32'), path.join(venv, 'Scripts', 'python.exe'));
    assert.equal(interpreterOf('/usr/bin/python3', 'linux'), '/usr/bin/python3');
    fs.rmSync(venv, { recursive: true, force: true });
});

test('a malformed host:port names coda.server.tcp', () => {
    for (const tcp of ['localhost', 'localhost:99999', 'a b:1']) {
        assert.throws(() => plan({ 'server.tcp': tcp }),
            (error: unknown) => error instanceof StartFailure && error.setting === 'coda.server.tcp');
    }
});

test('an executable that does not exist names the setting that pointed at it', async () => {
    for (const [values, setting] of [[{ 'server.command': '/no/such/coda-lsp' }, 'coda.server.command'],
        [{ 'server.python': '/no/such/python' }, 'coda.server.python']] as const) {
        const launch = plan(values);
        assert.equal(launch.kind, 'process');
        await assert.rejects(spawnServer(launch),
            (error: unknown) => error instanceof StartFailure && error.setting === setting
                && error.message.includes('was not found') && error.message.includes(setting));
    }
});

test('an early exit is explained from the server\'s last stderr lines', () => {
    const python = plan({ 'server.python': '/usr/bin/python3' });
    const noModule = exitFailure(python, 1, ['/usr/bin/python3: No module named coda_lsp']);
    assert.equal(noModule.setting, 'coda.server.python');
    assert.match(noModule.message, /has no coda-lsp installed/);
    const missingHubModel = exitFailure(python, 2, ['coda-lsp: Salesforce/CoDA-v0-Instruct is neither a folder nor '
        + 'downloaded into the Hugging Face cache at /c; download it first with `huggingface-cli download x`']);
    assert.equal(missingHubModel.setting, 'coda.model');
    assert.match(missingHubModel.message, /huggingface-cli download x` \(setting coda\.model\)$/);
    const other = exitFailure(plan({ 'server.command': '/x/coda-lsp' }), 3, ['Traceback', 'RuntimeError: boom']);
    assert.equal(other.setting, 'coda.server.command');
    assert.equal(other.message, 'coda-lsp exited with code 3 before it started: RuntimeError: boom (check coda.server.command).');
    assert.match(exitFailure(plan({}), null, []).message, /without saying why/);
    assert.equal(exitFailure(plan({}), 1, ['Killed'], true).message, 'coda-lsp exited with code 1: Killed (check coda.server.command).');
});

test('withTimeout: the value when in time, the failure when late', async () => {
    assert.equal(await withTimeout(Promise.resolve(7), 1000, () => new Error('late')), 7);
    const never = new Promise<number>(() => undefined);
    const failure = initializeTimeout(plan({ 'server.command': '/x/hangs' }), 20);
    await assert.rejects(withTimeout(never, 20, () => failure), failure);
    assert.match(failure.message, /"\/x\/hangs" did not answer initialize within 0.02 s.*coda\.server\.command/);
});
