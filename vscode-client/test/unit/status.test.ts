import assert from 'node:assert/strict';
import { test } from 'node:test';

import { CodaStatus, statusBarText, userMessage } from '../../src/status';

function status(overrides: Partial<CodaStatus> = {}): CodaStatus {
    return {
        version: '0.1.0', state: 'ready', error: null, modelPath: '/models/coda-tiny', device: 'cpu', dtype: 'float32',
        latency: { count: 0, totalP50Ms: null, totalP95Ms: null, engineP50Ms: null, engineP95Ms: null },
        numEngineCalls: 0, ...overrides,
    };
}

test('starting, loading, ready and not running', () => {
    assert.equal(statusBarText({ kind: 'starting' }, true).text, '$(sync~spin) CoDA: starting');
    assert.equal(statusBarText({ kind: 'running', status: status({ state: 'loading' }) }, true).text,
        '$(sync~spin) CoDA: loading coda-tiny');
    const ready = statusBarText({ kind: 'running', status: status() }, true);
    assert.equal(ready.text, '$(check) CoDA');
    assert.match(ready.tooltip, /^\/models\/coda-tiny on cpu \(float32\)\nNo completions yet\.$/);
    const failed = statusBarText({ kind: 'failed', message: 'The coda-lsp executable "x" was not found' }, true);
    assert.equal(failed.text, '$(error) CoDA: not running');
    assert.ok(failed.isError && failed.tooltip.startsWith('The coda-lsp executable'));
});

test('a hub snapshot is named by its repository, not its commit', () => {
    const snapshot = '/home/u/.cache/huggingface/hub/models--Salesforce--CoDA-v0-Instruct/snapshots/0123abcd';
    assert.equal(statusBarText({ kind: 'running', status: status({ state: 'loading', modelPath: snapshot }) }, true).text,
        '$(sync~spin) CoDA: loading Salesforce/CoDA-v0-Instruct');
});

test('recent latency: p50 in the text, p50 / p95 and the engine\'s share in the tooltip', () => {
    const latency = { count: 12, totalP50Ms: 141.6, totalP95Ms: 390.2, engineP50Ms: 120.4, engineP95Ms: 350 };
    const shown = statusBarText({ kind: 'running', status: status({ latency }) }, true);
    assert.equal(shown.text, '$(check) CoDA 142 ms');
    assert.match(shown.tooltip, /Last 12 completions: p50 142 ms, p95 390 ms; in the engine p50 120 ms$/);
    assert.equal(statusBarText({ kind: 'running', status: status({ latency }) }, false).text, '$(check) CoDA 142 ms (inline off)');
});

test('a model that failed to load: error state and one message naming coda.model', () => {
    const shown = statusBarText({ kind: 'running', status: status({ state: 'error', error: 'config.json: bad JSON' }) }, true);
    assert.equal(shown.text, '$(error) CoDA: model error');
    assert.ok(shown.isError && shown.tooltip.includes('config.json: bad JSON') && shown.tooltip.includes('coda.model'));
    const message = userMessage('coda-lsp: model failed to load: config.json: bad JSON');
    assert.equal(message.setting, 'coda.model');
    assert.match(message.text, /^CoDA: the model failed to load: config\.json: bad JSON\. Set coda\.model .*Restart server/);
});

test('a server warning about a setting keeps naming it', () => {
    assert.deepEqual(userMessage('coda-lsp: coda.maxTokens: expected an integer, got \'x\''),
        { text: 'CoDA: coda.maxTokens: expected an integer, got \'x\'', setting: 'coda.maxTokens' });
    assert.deepEqual(userMessage('coda-lsp: the model wrote nothing usable here'),
        { text: 'CoDA: the model wrote nothing usable here', setting: undefined });
});
