/** The status bar's text from coda/status (model state, recent latency) and the start state; pure formatting. */

/** coda/status's answer (coda_lsp/features/status.py). */
export interface CodaStatus {
    version: string;
    state: 'loading' | 'ready' | 'error';
    error: string | null;
    modelPath: string;
    device: string;
    dtype: string | null;
    latency: {
        count: number;
        totalP50Ms: number | null;
        totalP95Ms: number | null;
        engineP50Ms: number | null;
        engineP95Ms: number | null;
    };
    numEngineCalls: number;
}

export const STATUS_REQUEST = 'coda/status';

/** What the extension knows: starting, the server's status, or why it is not running. */
export type ServerView =
    | { kind: 'starting' }
    | { kind: 'running'; status: CodaStatus }
    | { kind: 'failed'; message: string };

export interface StatusBarText {
    text: string;
    tooltip: string;
    isError: boolean;
}

export function statusBarText(view: ServerView, inlineEnabled: boolean): StatusBarText {
    const off = inlineEnabled ? '' : ' (inline off)';
    if (view.kind === 'starting') {
        return { text: '$(sync~spin) CoDA: starting', tooltip: 'Starting coda-lsp', isError: false };
    }
    if (view.kind === 'failed') {
        return { text: '$(error) CoDA: not running', tooltip: `${view.message}\nClick for the log.`, isError: true };
    }
    const { status } = view;
    const model = modelName(status.modelPath);
    if (status.state === 'loading') {
        return { text: `$(sync~spin) CoDA: loading ${model}`, tooltip: `Loading ${status.modelPath} on ${status.device}`,
            isError: false };
    }
    if (status.state === 'error') {
        return { text: '$(error) CoDA: model error', tooltip: `${status.error ?? 'the model failed to load'}\n`
            + 'Fix coda.model, then run "CoDA: Restart server".', isError: true };
    }
    const { latency } = status;
    const where = `${status.modelPath} on ${status.device}${status.dtype ? ` (${status.dtype})` : ''}`;
    if (!latency.count || latency.totalP50Ms === null) {
        return { text: `$(check) CoDA${off}`, tooltip: `${where}\nNo completions yet.`, isError: false };
    }
    const engine = latency.engineP50Ms === null ? '' : `; in the engine p50 ${ms(latency.engineP50Ms)}`;
    return {
        text: `$(check) CoDA ${ms(latency.totalP50Ms)}${off}`,
        tooltip: `${where}\nLast ${latency.count} completions: p50 ${ms(latency.totalP50Ms)}, `
            + `p95 ${ms(latency.totalP95Ms)}${engine}`,
        isError: false,
    };
}

const LOAD_FAILURE = /^coda-lsp: model failed to load: (.*)$/s;

/** A server's window/showMessage as the user sees it, with the setting it is about: a load failure becomes one
 * message saying what to change; the server's setting warnings already name their setting. */
export function userMessage(serverText: string): { text: string; setting: string | undefined } {
    const failure = LOAD_FAILURE.exec(serverText);
    if (failure) {
        return { text: `CoDA: the model failed to load: ${failure[1]}. Set coda.model to a CoDA checkpoint folder or `
            + 'a downloaded hub id, then run "CoDA: Restart server".', setting: 'coda.model' };
    }
    const setting = /\bcoda\.([A-Za-z.]+)/.exec(serverText);
    return { text: serverText.replace(/^coda-lsp:/, 'CoDA:'), setting: setting ? `coda.${setting[1]}` : undefined };
}

function modelName(modelPath: string): string {
    const parts = modelPath.split(/[\\/]/).filter(Boolean);
    // A hub cache snapshot is .../models--owner--name/snapshots/<commit>: the repository says more than the hash.
    const repo = parts.at(-3);
    if (parts.at(-2) === 'snapshots' && repo?.startsWith('models--')) {
        return repo.slice('models--'.length).replace('--', '/');
    }
    return parts.at(-1) ?? modelPath;
}

function ms(value: number | null): string {
    return value === null ? '?' : `${Math.round(value)} ms`;
}
