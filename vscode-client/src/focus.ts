/** coda/didFocus: tells the server which cursor the user looks at (an editor made active, the cursor moved by
 * keyboard or mouse and come to rest), so it computes that context before the first keystroke there: a cold
 * start costs seconds on a CPU with CoDA-1.7B. Typing moves the cursor too, but the completion it asks for already
 * warms the context, so those moves send nothing. */

import * as vscode from 'vscode';
import { LanguageClient } from 'vscode-languageclient/node';

export const DID_FOCUS = 'coda/didFocus';
/** ms the cursor must rest before it is sent: arrow keys held down or a scroll send one notification, not dozens. */
export const REST_MS = 250;

export function watchFocus(client: LanguageClient, languages: () => readonly string[]): vscode.Disposable {
    let timer: NodeJS.Timeout | undefined;
    const focus = (editor: vscode.TextEditor | undefined): void => {
        clearTimeout(timer);
        if (!editor || !languages().includes(editor.document.languageId)) {
            return;
        }
        timer = setTimeout(() => {
            if (client.isRunning()) {
                void client.sendNotification(DID_FOCUS, {
                    textDocument: { uri: editor.document.uri.toString() },
                    position: client.code2ProtocolConverter.asPosition(editor.selection.active),
                });
            }
        }, REST_MS);
    };
    focus(vscode.window.activeTextEditor);
    return vscode.Disposable.from(
        vscode.window.onDidChangeActiveTextEditor(focus),
        vscode.window.onDidChangeTextEditorSelection((event) => {
            if (event.kind !== undefined && event.kind !== vscode.TextEditorSelectionChangeKind.Command) {
                focus(event.textEditor);
            }
        }),
        { dispose: () => clearTimeout(timer) },
    );
}
