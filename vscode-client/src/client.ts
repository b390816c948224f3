/** The language client's life: start (with one message per failure), status polling, restart, stop. */

import { ChildProcess } from 'node:child_process';

import * as vscode from 'vscode';
import {
    CloseAction,
    ErrorAction,
    LanguageClient,
    LanguageClientOptions,
    MessageType,
    RevealOutputChannelOn,
    ServerOptions,
    ShowMessageNotification,
    State,
} from 'vscode-languageclient/node';

import {
    INITIALIZE_TIMEOUT_MS,
    LaunchPlan,
    connectTcp,
    exitFailure,
    initializeTimeout,
    launchPlan,
    spawnServer,
    withTimeout,
} from './server';
import { watchFocus } from './focus';
import { ConfigurationLike, StartFailure, inlineCompletionsEnabled, readLaunchSettings, serverSettings } from './settings';
import { CodaStatus, STATUS_REQUEST, ServerView, userMessage } from './status';
import { StatusBar } from './statusBar';

const SECTION = 'coda';
const POLL_WHILE_LOADING_MS = 500;
const POLL_WHILE_READY_MS = 10_000;
/** How long a server that failed to start gets to exit, so its own last words make the message. */
const EXIT_GRACE_MS = 2_000;

/** vscode-languageclient's options as the extension configures them: languages, the `coda` object as
 * initializationOptions and as the answer to workspace/configuration, automatic inline requests gated by the
 * toggle, no completion items. Exported for the protocol test, which computes the capabilities the real client
 * sends from these. */
export function clientOptions(config: () => ConfigurationLike, outputChannel: vscode.LogOutputChannel | undefined,
                              onInlineResult: () => void = () => undefined): LanguageClientOptions {
    const languages = config().get<string[]>('enabledLanguages') ?? [];
    return {
        documentSelector: languages.flatMap((language) => [{ language, scheme: 'file' }, { language, scheme: 'untitled' }]),
        outputChannel,
        revealOutputChannelOn: RevealOutputChannelOn.Never,
        initializationOptions: { [SECTION]: serverSettings(config()) },
        synchronize: { configurationSection: SECTION },
        middleware: {
            workspace: {
                configuration: (params, token, next) => params.items.every((item) => item.section === SECTION)
                    ? params.items.map(() => serverSettings(config()))
                    : next(params, token),
            },
            // The server's completion items are its ghost text for editors without inline completion. VS Code
            // asks for them whenever its quick suggestions start at a typed word, as "invoked": each ran an infill
            // on the one engine thread the ghost text waits for, for a menu entry beside the same ghost text
            // (README.md, "In a real VS Code").
            provideCompletionItem: () => null,
            provideInlineCompletionItems: async (document, position, context, token, next) => {
                const automatic = context.triggerKind === vscode.InlineCompletionTriggerKind.Automatic;
                if (automatic && !inlineCompletionsEnabled(config())) {
                    return null;
                }
                const result = await next(document, position, context, token);
                onInlineResult();
                return result;
            },
        },
    };
}

/** LanguageClient that leaves start failures to the controller, which shows one message naming the setting. */
class CodaLanguageClient extends LanguageClient {
    quietErrors = true;

    override error(message: string, data?: unknown, showNotification: boolean | 'force' = true): void {
        super.error(message, data, this.quietErrors ? false : showNotification);
    }
}

export class Controller implements vscode.Disposable {
    client: LanguageClient | undefined;
    private view: ServerView = { kind: 'starting' };
    private poll: NodeJS.Timeout | undefined;
    private refreshSoon: NodeJS.Timeout | undefined;
    private child: ChildProcess | undefined;
    private focusWatch: vscode.Disposable | undefined;

    constructor(private readonly output: vscode.LogOutputChannel, private readonly statusBar: StatusBar) {}

    private get config(): vscode.WorkspaceConfiguration {
        return vscode.workspace.getConfiguration(SECTION);
    }

    async start(): Promise<void> {
        this.show({ kind: 'starting' });
        let plan: LaunchPlan;
        try {
            plan = launchPlan(readLaunchSettings(this.config));
        } catch (error) {
            return this.fail(error);
        }
        let exited: Promise<StartFailure | undefined> = Promise.resolve(undefined);
        let started = false;
        const serverOptions: ServerOptions = async () => {
            if (plan.kind === 'tcp') {
                const socket = await connectTcp(plan.host, plan.port);
                return { reader: socket, writer: socket };
            }
            this.output.info(`starting ${plan.command} ${plan.args.join(' ')}`);
            const server = await spawnServer(plan);
            this.child = server.child;
            exited = new Promise((resolve) => server.child.once('exit',
                (code) => resolve(exitFailure(plan, code, server.stderrTail(), started))));
            return server.child;
        };
        const client = new CodaLanguageClient('coda', 'CoDA', serverOptions, {
            ...clientOptions(() => this.config, this.output, () => this.scheduleRefresh()),
            errorHandler: {
                error: () => ({ action: ErrorAction.Shutdown, handled: true }),
                closed: () => {
                    // a close while starting is start()'s to report
                    if (this.client === client && started) {
                        void exited.then((failure) => this.fail(failure ?? new Error('coda-lsp stopped')));
                    }
                    return { action: CloseAction.DoNotRestart, handled: true };
                },
            },
            initializationFailedHandler: () => false,
        });
        client.onNotification(ShowMessageNotification.type, (params) => this.showServerMessage(params.type, params.message));
        this.client = client;
        try {
            await withTimeout(client.start(), INITIALIZE_TIMEOUT_MS, () => initializeTimeout(plan, INITIALIZE_TIMEOUT_MS));
            // start() also resolves when the connection closes during initialize
            if (!client.isRunning()) {
                throw new Error('coda-lsp stopped while starting');
            }
        } catch (error) {
            const failure = await Promise.race([exited, delay(EXIT_GRACE_MS)]);
            await this.stopClient();
            return this.fail(failure ?? error);
        }
        started = true;
        client.quietErrors = false;
        this.focusWatch = watchFocus(client, () => this.config.get<string[]>('enabledLanguages') ?? []);
        this.refresh();
    }

    async restart(): Promise<void> {
        await this.stopClient();
        await this.start();
    }

    async stopClient(): Promise<void> {
        const client = this.client;
        const child = this.child;
        this.client = this.child = undefined;
        clearTimeout(this.poll);
        this.focusWatch?.dispose();
        this.focusWatch = undefined;
        if (client && client.state !== State.Stopped) {
            await client.stop(2_000).catch((error: unknown) => this.output.warn(`stopping coda-lsp: ${String(error)}`));
        }
        // a server that never answered initialize ignores shutdown too
        if (child && child.exitCode === null && child.signalCode === null) {
            child.kill();
        }
    }

    /** Flip coda.inlineCompletions.enabled where it is set (workspace over user). */
    async toggleInlineCompletions(): Promise<void> {
        const key = 'inlineCompletions.enabled';
        const inspected = this.config.inspect<boolean>(key);
        const target = inspected?.workspaceValue !== undefined
            ? vscode.ConfigurationTarget.Workspace : vscode.ConfigurationTarget.Global;
        await this.config.update(key, !inlineCompletionsEnabled(this.config), target);
        this.show(this.view);
    }

    dispose(): void {
        clearTimeout(this.poll);
        clearTimeout(this.refreshSoon);
        void this.stopClient();
    }

    private show(view: ServerView): void {
        this.view = view;
        this.statusBar.show(view, inlineCompletionsEnabled(this.config));
    }

    private fail(error: unknown): void {
        const message = error instanceof Error ? error.message : String(error);
        const setting = error instanceof StartFailure ? error.setting : undefined;
        this.output.error(message);
        this.show({ kind: 'failed', message });
        void offerFix(message, setting, this.output);
    }

    private showServerMessage(type: MessageType, serverText: string): void {
        const { text, setting } = userMessage(serverText);
        if (type === MessageType.Error) {
            void offerFix(text, setting, this.output);
        } else if (type === MessageType.Warning) {
            void vscode.window.showWarningMessage(text);
        } else {
            void vscode.window.showInformationMessage(text);
        }
    }

    /** Ask coda/status now; again soon while loading, rarely once ready (a completion refreshes it too). */
    private refresh(): void {
        const client = this.client;
        clearTimeout(this.poll);
        if (!client || client.state !== State.Running) {
            return;
        }
        client.sendRequest<CodaStatus>(STATUS_REQUEST, {}).then((status) => {
            if (this.client !== client) {
                return;
            }
            this.show({ kind: 'running', status });
            this.poll = setTimeout(() => this.refresh(),
                status.state === 'loading' ? POLL_WHILE_LOADING_MS : POLL_WHILE_READY_MS);
        }, (error: unknown) => this.output.warn(`coda/status failed: ${String(error)}`));
    }

    private scheduleRefresh(): void {
        clearTimeout(this.refreshSoon);
        this.refreshSoon = setTimeout(() => this.refresh(), 200);
    }
}

async function offerFix(message: string, setting: string | undefined, output: vscode.LogOutputChannel): Promise<void> {
    const actions = setting ? ['Open Setting', 'Show Log'] : ['Show Log'];
    const choice = await vscode.window.showErrorMessage(message, ...actions);
    if (choice === 'Open Setting' && setting) {
        await vscode.commands.executeCommand('workbench.action.openSettings', setting);
    } else if (choice === 'Show Log') {
        output.show(true);
    }
}

function delay(ms: number): Promise<undefined> {
    return new Promise((resolve) => setTimeout(() => resolve(undefined), ms));
}
