/** The packaged coda-lsp.vsix: only the bundle and the manifest, and a bundle that loads with nothing but
 * `vscode` and Node's own modules (its runtime dependencies are inside it). Runs after `vsce package`. */

import '../support/register';

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { builtinModules } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';

import * as yauzl from 'yauzl';

import manifest from '../../package.json';

const VSIX = path.resolve(__dirname, '../../../coda-lsp.vsix');

function readVsix(file: string): Promise<Map<string, Buffer>> {
    return new Promise((resolve, reject) => {
        yauzl.open(file, { lazyEntries: true }, (error, zip) => {
            if (error) {
                return reject(error);
            }
            const entries = new Map<string, Buffer>();
            zip.on('entry', (entry: yauzl.Entry) => zip.openReadStream(entry, (streamError, stream) => {
                if (streamError) {
                    return reject(streamError);
                }
                const chunks: Buffer[] = [];
                stream.on('data', (chunk: Buffer) => chunks.push(chunk));
                stream.on('end', () => {
                    entries.set(entry.fileName, Buffer.concat(chunks));
                    zip.readEntry();
                });
            }));
            zip.on('end', () => resolve(entries));
            zip.on('error', reject);
            zip.readEntry();
        });
    });
}

test('the vsix holds the bundle, the manifest, readme and license, and nothing else of the extension', async () => {
    const entries = await readVsix(VSIX);
    const files = [...entries.keys()].filter((name) => name.startsWith('extension/')).sort();
    assert.deepEqual(files, ['extension/LICENSE.txt', 'extension/dist/extension.js', 'extension/package.json',
        'extension/readme.md']);
    const packaged = JSON.parse(entries.get('extension/package.json')!.toString('utf8')) as typeof manifest;
    assert.equal(packaged.main, './dist/extension.js');
    assert.deepEqual(packaged.contributes, manifest.contributes);
});

test('the bundled extension loads with only vscode and Node built-ins, and exports activate / deactivate', async () => {
    const bundle = (await readVsix(VSIX)).get('extension/dist/extension.js')!.toString('utf8');
    const required = new Set([...bundle.matchAll(/require\("([^"]+)"\)/g)].map((match) => match[1]));
    const outside = [...required].filter((name) => name !== 'vscode' && !builtinModules.includes(name.replace(/^node:/, '')));
    assert.deepEqual(outside, []);
    const unpacked = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'coda-vsix-')), 'extension.js');
    fs.writeFileSync(unpacked, bundle);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const extension = require(unpacked) as { activate: unknown; deactivate: unknown };
    assert.equal(typeof extension.activate, 'function');
    assert.equal(typeof extension.deactivate, 'function');
});
