/** CPU time of this process's descendants from /proc (Linux), split into coda-lsp (`python -m coda_lsp` and the
 * tap in front of it) and the editor (code-server, its extension host, Chromium): who used the cores meanwhile. */

import * as fs from 'node:fs';

export interface CpuSample {
    at: number;        // ms since the epoch
    server: number;    // CPU seconds, user + system
    editor: number;
}

interface ProcessInfo {
    pid: number;
    ppid: number;
    seconds: number;
    isServer: boolean;
}

const TICKS_PER_SECOND = 100;  // USER_HZ on Linux

function readProcess(pid: number): ProcessInfo | undefined {
    try {
        const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
        // the command name may hold spaces and parentheses: the fields after it start after its last ')'
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        return { pid, ppid: Number(fields[1]), seconds: (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND,
            isServer: cmdline.includes('coda_lsp') || cmdline.some((arg) => arg.endsWith('lspTap.js')) };
    } catch {
        return undefined;  // it exited meanwhile
    }
}

export function sampleCpu(): CpuSample {
    const processes = fs.readdirSync('/proc').filter((name) => /^\d+$/.test(name))
        .map((name) => readProcess(Number(name))).filter((info): info is ProcessInfo => info !== undefined);
    const byPid = new Map(processes.map((info) => [info.pid, info]));
    const sample: CpuSample = { at: Date.now(), server: 0, editor: 0 };
    for (const info of processes) {
        let isServer = false;
        let ancestor: ProcessInfo | undefined = info;
        while (ancestor && ancestor.pid !== process.pid) {
            isServer ||= ancestor.isServer;
            ancestor = byPid.get(ancestor.ppid);
        }
        if (ancestor && info.pid !== process.pid) {
            sample[isServer ? 'server' : 'editor'] += info.seconds;
        }
    }
    return sample;
}
