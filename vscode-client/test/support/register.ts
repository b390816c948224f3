/** Makes `require('vscode')` load the stand-in in ./vscode: VS Code's module exists only inside the editor. */

import Module from 'node:module';

const stub = require.resolve('./vscode');
type Resolve = (request: string, ...rest: unknown[]) => string;
const moduleInternals = Module as unknown as { _resolveFilename: Resolve };
const resolve = moduleInternals._resolveFilename;
moduleInternals._resolveFilename = function (this: unknown, request: string, ...rest: unknown[]): string {
    return request === 'vscode' ? stub : resolve.call(this, request, ...rest);
};
