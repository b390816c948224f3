/** "CoDA: Fill this block": the server's code action for a range, resolved into its edit; no vscode import. */

import {
    CodeAction,
    CodeActionKind,
    CodeActionRequest,
    CodeActionResolveRequest,
    CodeActionTriggerKind,
    Command,
    Range,
    WorkspaceEdit,
} from 'vscode-languageserver-protocol';

/** The server's action title (coda_lsp/features/fill_block.py TITLE). */
export const FILL_TITLE = 'Fill this block with CoDA';

/** What sends requests: vscode-languageclient's LanguageClient, or a ProtocolConnection in tests. */
export interface Requester {
    sendRequest<R>(method: string, params: unknown): Promise<R>;
}

/** `none`: no empty or placeholder block at the range; `empty`: the model wrote nothing usable (the server says so). */
export type FillResult =
    | { kind: 'edit'; edit: WorkspaceEdit }
    | { kind: 'command'; command: Command }
    | { kind: 'none' }
    | { kind: 'empty' };

export function pickFillAction(actions: (CodeAction | Command)[] | null): CodeAction | undefined {
    return actions?.find((action): action is CodeAction => 'title' in action && action.title === FILL_TITLE
        && 'kind' in action && action.kind === CodeActionKind.RefactorRewrite);
}

/** Ask for the fill action at `range` (an empty range: the block at the cursor; else: rewrite the selection) and
 * resolve it: the edit, or, from a server that applies the edit itself, the command to run. */
export async function requestFill(client: Requester, uri: string, range: Range): Promise<FillResult> {
    const actions = await client.sendRequest<(CodeAction | Command)[] | null>(CodeActionRequest.method, {
        textDocument: { uri },
        range,
        context: { diagnostics: [], only: [CodeActionKind.RefactorRewrite], triggerKind: CodeActionTriggerKind.Invoked },
    });
    const action = pickFillAction(actions);
    if (action === undefined) {
        return { kind: 'none' };
    }
    const resolved = action.edit || action.command
        ? action : await client.sendRequest<CodeAction>(CodeActionResolveRequest.method, action);
    if (resolved.edit) {
        return { kind: 'edit', edit: resolved.edit };
    }
    return resolved.command ? { kind: 'command', command: resolved.command } : { kind: 'empty' };
}
