#!/usr/bin/env bash
# The whole test suite on a Debian box as root: install the real peers the tests talk to
# (nginx, Python venv with aiohttp + nc_py_api, frpc/frps 0.65, podman + registry), then run
# every unit and integration test. This is the README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

t0=$(date +%s)
echo "== installing test peers"
bash tests/peers/install.sh
bash tests/peers/podman/setup.sh
t1=$(date +%s)
echo "== peers ready in $((t1 - t0)) s"

echo "== cargo test --profile ci (optimised, no LTO)"
status=0
cargo test --profile ci --no-fail-fast "$@" || status=$?
t2=$(date +%s)
echo "== tests finished in $((t2 - t1)) s (exit $status); total $((t2 - t0)) s"
exit "$status"
