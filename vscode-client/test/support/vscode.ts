/** A stand-in for the `vscode` module: the few APIs the extension's modules touch, recorded for assertions.
 * vscode-languageclient also reads editor APIs while it builds its capabilities; those come from `anything`,
 * which accepts every property access and call and does nothing. */

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
}, { get: (object, property) => (object as Record<PropertyKey, unknown>)[property] ?? anything(`window.${String(property)}`) });

export const LogLevel = { Off: 0, Trace: 1, Debug: 2, Info: 3, Warning: 4, Error: 5 };

// Everything else (workspace, languages, CompletionItem to extend, ...) is `anything`.
module.exports = new Proxy(module.exports as Record<PropertyKey, unknown>, {
    get: (exports, property) => property in exports ? exports[property] : anything(`vscode.${String(property)}`),
});
