/** coda.* settings -> how to launch the server and the `coda` object it is sent; pure (no vscode import). */

import * as os from 'os';

import manifest from '../package.json';

/** What reads settings: vscode's WorkspaceConfiguration for section "coda", or a stand-in in tests. */
export interface ConfigurationLike {
    get<T>(key: string): T | undefined;
}

/** Settings the extension itself uses; every other coda.* key in package.json is the server's. */
export const CLIENT_SETTINGS = [
    'server.command',
    'server.python',
    'server.tcp',
    'remote.url',
    'remote.apiKeyFile',
    'model',
    'device',
    'dtype',
    'inlineCompletions.enabled',
    'trace.server',
] as const;

export interface LaunchSettings {
    command: string;  // the coda-lsp executable; '' = not set
    python: string;   // an interpreter or a virtual environment folder; '' = not set
    tcp: string;      // host:port of a running server; '' = start one
    remote: string;   // URL of a `coda-lsp serve` the started server sends its infills to; '' = load a model
    remoteApiKeyFile: string;  // that server's key, the file's first line; '' = none
    model: string;    // folder or hub id; '' = the server's own default model
    device: string;   // 'auto' | 'cpu' | 'cuda' | 'cuda:N'
    dtype: string;    // 'auto' | 'fp32' | 'bf16' | 'fp16' | 'int8'
}

const PREFIX = 'coda.';
const DEVICE = /^(auto|cpu|cuda|cuda:\d+|mps)$/;
const DTYPES = ['auto', 'fp32', 'bf16', 'fp16', 'int8'];
const REMOTE_URL = /^https?:\/\/[^\s/]+(\/.*)?$/;

/** Why the server cannot be started, and the one setting that fixes it. */
export class StartFailure extends Error {
    constructor(message: string, readonly setting: string) {
        super(message);
        this.name = 'StartFailure';
    }
}

/** The server's setting keys (without "coda."), in package.json's order. */
export const SERVER_SETTINGS: readonly string[] = Object.keys(manifest.contributes.configuration.properties)
    .map((key) => key.slice(PREFIX.length))
    .filter((key) => !(CLIENT_SETTINGS as readonly string[]).includes(key));

/** The launch settings; StartFailure names the first one of the wrong type or form. */
export function readLaunchSettings(config: ConfigurationLike): LaunchSettings {
    const launch = {
        command: expandHome(text(config, 'server.command')),
        python: expandHome(text(config, 'server.python')),
        tcp: text(config, 'server.tcp'),
        remote: text(config, 'remote.url'),
        remoteApiKeyFile: expandHome(text(config, 'remote.apiKeyFile')),
        model: expandHome(text(config, 'model')),
        device: text(config, 'device') || 'auto',
        dtype: text(config, 'dtype') || 'auto',
    };
    if (launch.remote && !REMOTE_URL.test(launch.remote)) {
        throw new StartFailure(`coda.remote.url is "${launch.remote}"; expected a URL such as http://gpu-box:8012`,
            'coda.remote.url');
    }
    if (!DEVICE.test(launch.device)) {
        throw new StartFailure(`coda.device is "${launch.device}"; use auto, cpu, cuda or cuda:N`, 'coda.device');
    }
    if (!DTYPES.includes(launch.dtype)) {
        throw new StartFailure(`coda.dtype is "${launch.dtype}"; use ${DTYPES.join(', ')}`, 'coda.dtype');
    }
    return launch;
}

/** The `coda` object for initializationOptions and for the server's workspace/configuration pull: every server
 * setting as the user wrote it (the server checks types and ranges and names any value it ignores). */
export function serverSettings(config: ConfigurationLike): Record<string, unknown> {
    const values: Record<string, unknown> = {};
    for (const key of SERVER_SETTINGS) {
        const value = config.get<unknown>(key);
        if (value !== undefined) {
            values[key] = value;
        }
    }
    return values;
}

export function inlineCompletionsEnabled(config: ConfigurationLike): boolean {
    return config.get<boolean>('inlineCompletions.enabled') !== false;
}

/** The server's arguments after the executable: model and device only when they differ from its defaults; with
 * coda.remote.url, the URL and key file instead (the model, device and format are the remote server's). */
export function serverArguments(launch: LaunchSettings): string[] {
    const args = ['--stdio'];
    if (launch.remote) {
        args.push('--remote', launch.remote);
        if (launch.remoteApiKeyFile) {
            args.push('--api-key-file', launch.remoteApiKeyFile);
        }
        return args;
    }
    if (launch.model) {
        args.push('--model', launch.model);
    }
    if (launch.device !== 'auto') {
        args.push('--device', launch.device);
    }
    if (launch.dtype !== 'auto') {
        args.push('--dtype', launch.dtype);
    }
    return args;
}

/** A leading `~` (alone or before a path separator) as the home folder: settings reach the server as written, and
 * it is started with no shell to expand them. */
export function expandHome(value: string, home: string = os.homedir()): string {
    return value.replace(/^~(?=$|[\\/])/, () => home);
}

function text(config: ConfigurationLike, key: string): string {
    const value = config.get<unknown>(key);
    if (value === undefined || value === null) {
        return '';
    }
    if (typeof value !== 'string') {
        throw new StartFailure(`${PREFIX}${key} must be a string, got ${JSON.stringify(value)}`, PREFIX + key);
    }
    return value.trim();
}
