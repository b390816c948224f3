/** The VS Code workbench in headless Chromium, driven as a person does: keyboard, Quick Open, the command palette;
 * and what the person sees read from the page (ghost text, the status bar, notifications). */

import * as fs from 'node:fs';

import { Browser, Page, chromium } from 'playwright-core';

import { Position } from './trace';

/** Launch flags that work in a container without a display or GPU, and keep Chromium off the network. */
const CHROMIUM_FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const POLL_MS = 250;

/** Debian's chromium binary (its /usr/bin/chromium is a wrapper script), or $CHROMIUM. */
export function chromiumPath(): string {
    const candidates = [process.env.CHROMIUM, '/usr/lib/chromium/chromium', '/usr/bin/chromium'];
    const found = candidates.find((file): file is string => !!file && fs.existsSync(file));
    if (!found) {
        throw new Error('no Chromium: install Debian\'s chromium (apt-get install chromium) or set CHROMIUM');
    }
    return found;
}

/** Poll `probe` until it returns a value; on timeout the error says what was awaited and what `describe` sees. */
export async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>,
                                 describe: () => Promise<string> = () => Promise.resolve('')): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const value = await probe();
        if (value !== undefined) {
            return value;
        }
        if (Date.now() > deadline) {
            throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${await describe()}`);
        }
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
}

export class Workbench {
    private constructor(private readonly browser: Browser, readonly page: Page) {}

    static async open(url: string): Promise<Workbench> {
        // A fresh temporary profile per launch (Playwright's own --user-data-dir).
        const browser = await chromium.launch({ executablePath: chromiumPath(), headless: true, args: CHROMIUM_FLAGS });
        const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
        await page.goto(url);
        await page.waitForSelector('.monaco-workbench', { timeout: 120_000 });
        return new Workbench(browser, page);
    }

    async close(): Promise<void> {
        await this.browser.close();
    }

    async screenshot(file: string): Promise<void> {
        await this.page.screenshot({ path: file });
    }

    /** Quick Open (Ctrl+P) a workspace file by name; resolves once its editor has focus. */
    async openFile(name: string, timeoutMs: number): Promise<void> {
        await this.quickInput('Control+P', name, timeoutMs);
        await this.page.waitForSelector(`.tab.active[aria-label^="${name}"]`, { timeout: timeoutMs });
        await this.page.waitForSelector('.monaco-editor.focused', { timeout: timeoutMs });
    }

    /** Run a command from the command palette by its full title, e.g. "CoDA: Fill this block". */
    async runCommand(title: string, timeoutMs: number): Promise<void> {
        await this.quickInput('F1', title, timeoutMs);
    }

    /** Open a quick input, type `text`, wait for a row labelled with it (the file index or the command list can
     * lag behind on a busy machine) and pick it. */
    private async quickInput(key: string, text: string, timeoutMs: number): Promise<void> {
        await this.page.keyboard.press(key);
        await this.page.waitForSelector('.quick-input-widget input:focus', { timeout: timeoutMs });
        await this.page.keyboard.type(text);
        await this.page.waitForSelector(`.quick-input-list .monaco-list-row[aria-label*="${text}"]`,
            { timeout: timeoutMs });
        await this.page.keyboard.press('Enter');
    }

    /** The CoDA status bar item's text, without its icon: "CoDA: starting", "CoDA", "CoDA 812 ms", ... */
    async codaStatus(): Promise<string> {
        const item = this.page.locator('[id="coda-lsp.coda-lsp.coda.status"]');
        return (await item.count()) ? (await item.innerText()).trim() : '(no CoDA status bar item)';
    }

    /** The ghost text on screen ('' when none): the part shown on the cursor's line, then each further line. */
    async ghostText(): Promise<string> {
        const editor = this.page.locator('.monaco-editor.focused');
        const inline = await editor.locator('.view-line .ghost-text-decoration').allInnerTexts();
        const further = await editor.locator('.ghost-text').allInnerTexts();
        return [inline.join(''), ...further].join('\n').replace(/\u00a0/g, ' ');
    }

    /** The cursor as the status bar shows it ("Ln 14, Col 5"), 0-based as in LSP (no tabs in these files). */
    async cursor(): Promise<Position> {
        const text = await this.page.locator('[id="status.editor.selection"]').innerText();
        const match = /Ln (\d+), Col (\d+)/.exec(text);
        if (!match) {
            throw new Error(`no cursor position in the status bar: "${text}"`);
        }
        return { line: Number(match[1]) - 1, character: Number(match[2]) - 1 };
    }

    /** Whether the active tab has unsaved changes. */
    async isDirty(): Promise<boolean> {
        return (await this.page.locator('.tab.active.dirty').count()) > 0;
    }

    /** The texts of the notifications on screen (e.g. the extension's error or "no block to fill here"). */
    async notifications(): Promise<string[]> {
        return this.page.locator('.notifications-toasts .notification-list-item-message').allInnerTexts();
    }
}
