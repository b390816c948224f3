/** activate / deactivate: build the output channel, status bar and client controller; register the commands. */

import * as vscode from 'vscode';

import { Controller } from './client';
import { requestFill } from './fillBlock';
import { StatusBar } from './statusBar';

/** Changing one of these needs a new server process (or, for the languages, a new document selector). */
const RESTART_ON = ['coda.server', 'coda.remote', 'coda.model', 'coda.device', 'coda.dtype', 'coda.enabledLanguages'];

let controller: Controller | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
    const output = vscode.window.createOutputChannel('CoDA', { log: true });
    const statusBar = new StatusBar('coda.showLog');
    const active = new Controller(output, statusBar);
    controller = active;
    context.subscriptions.push(
        output,
        statusBar,
        active,
        vscode.commands.registerCommand('coda.fillThisBlock', () => fillThisBlock(active)),
        vscode.commands.registerCommand('coda.restartServer', () => active.restart()),
        vscode.commands.registerCommand('coda.showLog', () => output.show(true)),
        vscode.commands.registerCommand('coda.toggleInlineCompletions', () => active.toggleInlineCompletions()),
        vscode.workspace.onDidChangeConfiguration((event) => {
            if (RESTART_ON.some((section) => event.affectsConfiguration(section))) {
                void active.restart();
            }
        }),
    );
    await active.start();
}

export async function deactivate(): Promise<void> {
    await controller?.stopClient();
    controller = undefined;
}

/** Fill the block at the cursor (or rewrite the selection) with the server's code action, resolved and applied. */
async function fillThisBlock(active: Controller): Promise<void> {
    const editor = vscode.window.activeTextEditor;
    const client = active.client;
    if (!editor) {
        return;
    }
    if (!client?.isRunning()) {
        void vscode.window.showWarningMessage('CoDA: the server is not running; run "CoDA: Restart server".');
        return;
    }
    const range = client.code2ProtocolConverter.asRange(editor.selection);
    const result = await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Window, title: 'CoDA: filling the block' },
        () => requestFill(client, editor.document.uri.toString(), range));
    if (result.kind === 'edit') {
        await vscode.workspace.applyEdit(await client.protocol2CodeConverter.asWorkspaceEdit(result.edit));
    } else if (result.kind === 'command') {
        await vscode.commands.executeCommand(result.command.command, ...((result.command.arguments ?? []) as unknown[]));
    } else if (result.kind === 'none') {
        void vscode.window.showInformationMessage('CoDA: no block to fill here. Put the cursor in an empty body '
            + '(or on its `pass` / `...`), or select the code to rewrite.');
    }
}
