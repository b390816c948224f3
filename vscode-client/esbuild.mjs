// Bundles the extension and its runtime dependencies (vscode-languageclient) into dist/extension.js;
// `vscode` is the editor's own module. --production minifies.
import * as esbuild from 'esbuild';

const production = process.argv.includes('--production');
await esbuild.build({
    entryPoints: ['src/extension.ts'],
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    outfile: 'dist/extension.js',
    external: ['vscode'],
    minify: production,
    sourcemap: !production,
    logLevel: 'warning',
});
