/** The CoDA status bar item: shows statusBarText(view) and opens the log when clicked. */

import * as vscode from 'vscode';

import { ServerView, statusBarText } from './status';

export class StatusBar implements vscode.Disposable {
    private readonly item: vscode.StatusBarItem;

    constructor(clickCommand: string) {
        this.item = vscode.window.createStatusBarItem('coda.status', vscode.StatusBarAlignment.Right, 100);
        this.item.name = 'CoDA';
        this.item.command = clickCommand;
        this.item.show();
    }

    show(view: ServerView, inlineEnabled: boolean): void {
        const { text, tooltip, isError } = statusBarText(view, inlineEnabled);
        this.item.text = text;
        this.item.tooltip = tooltip;
        this.item.backgroundColor = isError ? new vscode.ThemeColor('statusBarItem.errorBackground') : undefined;
    }

    dispose(): void {
        this.item.dispose();
    }
}
