import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as os from 'os';
import * as path from 'path';

import manifest from '../../package.json';
import {
    CLIENT_SETTINGS,
    SERVER_SETTINGS,
    StartFailure,
    expandHome,
    inlineCompletionsEnabled,
    readLaunchSettings,
    serverArguments,
    serverSettings,
} from '../../src/settings';
import { fakeConfiguration } from '../support/config';

const declared = Object.keys(manifest.contributes.configuration.properties).map((key) => key.slice('coda.'.length));

test('every declared setting is either the extension\'s or the server\'s', () => {
    assert.deepEqual([...CLIENT_SETTINGS, ...SERVER_SETTINGS].sort(), [...declared].sort());
    assert.ok(SERVER_SETTINGS.includes('maxTokens') && !SERVER_SETTINGS.includes('model'));
});

test('the server gets only its own settings, as the user wrote them', () => {
    const sent = serverSettings(fakeConfiguration({ maxTokens: 12, steps: 'four', model: '/m' }));
    assert.deepEqual(Object.keys(sent), [...SERVER_SETTINGS]);
    assert.equal(sent.maxTokens, 12);
    assert.equal(sent.steps, 'four');  // a wrong type reaches the server, which names the setting it ignored
    assert.equal(sent.alg, manifest.contributes.configuration.properties['coda.alg'].default);  // unset: the default
});

test('launch settings: defaults give a bare --stdio; model, device and dtype are passed when set', () => {
    assert.deepEqual(serverArguments(readLaunchSettings(fakeConfiguration())), ['--stdio']);
    const launch = readLaunchSettings(fakeConfiguration({ model: ' Salesforce/CoDA-v0-Instruct ', device: 'cuda:1',
        dtype: 'bf16' }));
    assert.deepEqual(serverArguments(launch),
        ['--stdio', '--model', 'Salesforce/CoDA-v0-Instruct', '--device', 'cuda:1', '--dtype', 'bf16']);
    assert.deepEqual(serverArguments(readLaunchSettings(fakeConfiguration({ device: 'cpu' }))), ['--stdio', '--device', 'cpu']);
    assert.deepEqual(serverArguments(readLaunchSettings(fakeConfiguration({ dtype: 'int8' }))), ['--stdio', '--dtype', 'int8']);
});

test('with coda.remote.url the server loads no model and gets the URL and key file', () => {
    const launch = readLaunchSettings(fakeConfiguration({ 'remote.url': ' http://gpu-box:8012 ',
        'remote.apiKeyFile': '/home/me/.coda-key', model: '/ignored', device: 'cuda' }));
    assert.deepEqual(serverArguments(launch),
        ['--stdio', '--remote', 'http://gpu-box:8012', '--api-key-file', '/home/me/.coda-key']);
    assert.deepEqual(serverArguments(readLaunchSettings(fakeConfiguration({ 'remote.url': 'https://h/coda' }))),
        ['--stdio', '--remote', 'https://h/coda']);
});

test('every path setting expands a leading ~ to the home folder', () => {
    const home = os.homedir();
    const launch = readLaunchSettings(fakeConfiguration({ 'server.command': '~/.venv/bin/coda-lsp',
        'server.python': '~/.venv', 'remote.apiKeyFile': '~/.coda-key', model: '~/models/coda' }));
    assert.deepEqual([launch.command, launch.python, launch.remoteApiKeyFile, launch.model],
        [path.join(home, '.venv/bin/coda-lsp'), path.join(home, '.venv'), path.join(home, '.coda-key'),
            path.join(home, 'models/coda')]);
    assert.equal(expandHome('~', '/h'), '/h');
    assert.equal(expandHome('~\\x', 'C:\\Users\\me'), 'C:\\Users\\me\\x');
    for (const unchanged of ['~other/x', 'a/~/b', 'Salesforce/CoDA-v0-Instruct', '']) {
        assert.equal(expandHome(unchanged, '/h'), unchanged);
    }
});

test('a launch setting of the wrong type or form names that setting', () => {
    const cases: [Record<string, unknown>, string][] = [
        [{ 'remote.url': 'gpu-box:8012' }, 'coda.remote.url'],
        [{ model: 5 }, 'coda.model'],
        [{ 'server.command': ['coda-lsp'] }, 'coda.server.command'],
        [{ device: 'gpu' }, 'coda.device'],
        [{ dtype: 'fp8' }, 'coda.dtype'],
    ];
    for (const [values, setting] of cases) {
        assert.throws(() => readLaunchSettings(fakeConfiguration(values)),
            (error: unknown) => error instanceof StartFailure && error.setting === setting
                && error.message.includes(setting));
    }
});

test('inline completions are on unless turned off', () => {
    assert.equal(inlineCompletionsEnabled(fakeConfiguration()), true);
    assert.equal(inlineCompletionsEnabled(fakeConfiguration({ 'inlineCompletions.enabled': false })), false);
});
