/** A stand-in for the `vscode` module: what the extension's modules touch (status bar items, messages, the coda
 * configuration, a log channel), recorded for assertions. vscode-languageclient reads many more editor APIs while
 * it starts (to register its providers); those come from `anything`, which accepts every property access and call
 * and does nothing. */

import { fakeConfiguration } from './config';

export const version = '1.91.0';

export enum StatusBarAlignment { Left = 1, Right = 2 }
export enum InlineCompletionTriggerKind { Invoke = 0, Automatic = 1 }

export class ThemeColor {
    constructor(readonly id: string) {}
}

export class FakeStatusBarItem {
    text = '';
    tooltip: string | undefined;
    name: string | undefined;
    command: string | undefined;
    backgroundColor: ThemeColor | undefined;
    visible = false;
    disposed = false;

    constructor(readonly id: string, readonly alignment: StatusBarAlignment, readonly priority: number) {}

    show(): void {
        this.visible = true;
    }

    dispose(): void {
        this.disposed = true;
    }
}

export const statusBarItems: FakeStatusBarItem[] = [];

/** Messages the extension showed, as [kind, text, ...buttons]. */
export const shownMessages: string[][] = [];

/** The user's coda.* values; getConfiguration('coda') reads them over package.json's defaults. */
export const userSettings: Record<string, unknown> = {};

export enum ConfigurationTarget { Global = 1, Workspace = 2, WorkspaceFolder = 3 }

class FakeConfiguration {
    get<T>(key: string): T | undefined {
        return fakeConfiguration(userSettings).get<T>(key);
    }

    has(key: string): boolean {
        return this.get(key) !== undefined;
    }

    inspect<T>(key: string): { key: string; globalValue?: T } {
        return { key, globalValue: userSettings[key] as T | undefined };
    }

    update(key: string, value: unknown): Promise<void> {
        userSettings[key] = value;
        return Promise.resolve();
    }
}

class FakeLogOutputChannel {
    readonly lines: string[] = [];
    readonly name: string;
    logLevel = 3;  // Info
    onDidChangeLogLevel = () => ({ dispose: () => undefined });

    constructor(name: string) {
        this.name = name;
    }

    append(text: string): void { this.lines.push(text); }
    appendLine(text: string): void { this.lines.push(text); }
    trace(text: string): void { this.lines.push(text); }
    debug(text: string): void { this.lines.push(text); }
    info(text: string): void { this.lines.push(text); }
    warn(text: string): void { this.lines.push(text); }
    error(text: string | Error): void { this.lines.push(String(text)); }
    replace(text: string): void { this.lines.splice(0, this.lines.length, text); }
    clear(): void { this.lines.splice(0); }
    show(): void { /* no editor to show it in */ }
    hide(): void { /* no editor */ }
    dispose(): void { /* nothing held */ }
}

function message(kind: string) {
    return (text: string, ...buttons: unknown[]): Promise<undefined> => {
        shownMessages.push([kind, text, ...buttons.filter((button) => typeof button === 'string')]);
        return Promise.resolve(undefined);
    };
}

function anything(name: string): unknown {
    const target = function () { /* callable */ } as unknown as Record<PropertyKey, unknown>;
    return new Proxy(target, {
        get(object, property) {
            if (property === 'then') {
                return undefined;  // not a promise
            }
            if (property === Symbol.toPrimitive) {
                return () => name;
            }
            if (!(property in object)) {
                object[property] = anything(`${name}.${String(property)}`);
            }
            return object[property];
        },
        apply: () => anything(`${name}()`),
        construct: () => anything(`new ${name}`) as object,
    });
}

export const window = new Proxy({
    createStatusBarItem(id: string, alignment: StatusBarAlignment, priority: number): FakeStatusBarItem {
        const item = new FakeStatusBarItem(id, alignment, priority);
        statusBarItems.push(item);
        return item;
    },
    createOutputChannel: (name: string) => new FakeLogOutputChannel(name),
    showErrorMessage: message('error'),
    showWarningMessage: message('warning'),
    showInformationMessage: message('info'),
    visibleTextEditors: [],
    tabGroups: { all: [] },
}, { get: (object, property) => (object as Record<PropertyKey, unknown>)[property] ?? anything(`window.${String(property)}`) });

export const LogLevel = { Off: 0, Trace: 1, Debug: 2, Info: 3, Warning: 4, Error: 5 };

export const env = new Proxy({ appName: 'Visual Studio Code', language: 'en' }, {
    get: (object, property) => (object as Record<PropertyKey, unknown>)[property] ?? anything(`env.${String(property)}`),
});

export const workspace = new Proxy({
    getConfiguration: () => new FakeConfiguration(),
    textDocuments: [],
    workspaceFolders: undefined,
    notebookDocuments: [],
}, { get: (object, property) => (object as Record<PropertyKey, unknown>)[property] ?? anything(`workspace.${String(property)}`) });

// Everything else (workspace, languages, CompletionItem to extend, ...) is `anything`.
module.exports = new Proxy(module.exports as Record<PropertyKey, unknown>, {
    get: (exports, property) => property in exports ? exports[property] : anything(`vscode.${String(property)}`),
});
