#!/bin/sh
# Install and configure the Docker-compatible engine used by tests/docker_*.rs:
# podman's Docker API service (Debian podman 4.x) plus busybox for a registry-free image.
# Idempotent; needs root; starts NO service (the tests start `podman system service`
# themselves on a socket in a temp dir and kill it afterwards).
#
# Workarounds (see /work/shared/spec/test-peers.md §1):
# - runc instead of crun: crun 1.8 refuses the hybrid cgroup layout of CI boxes.
# - default_ulimits: rootful podman asks for nofile=1048576, which fails without
#   CAP_SYS_RESOURCE.
# - cgroup_manager cgroupfs: no systemd in the container.
set -eu

need=""
for bin in podman runc busybox docker-registry; do
    command -v "$bin" >/dev/null 2>&1 || need=1
done
if [ -n "$need" ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc busybox-static docker-registry >/dev/null
fi

mkdir -p /etc/containers
conf=/etc/containers/containers.conf
if ! grep -q 'lyre-tests' "$conf" 2>/dev/null; then
    cat > "$conf" <<'CONF'
# lyre-tests: podman workarounds for CI (tests/peers/podman/setup.sh)
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
CONF
fi

# Image pulls in tests go to a docker-registry on a free loopback port; one entry for the
# host marks every port of it insecure (plain HTTP). Must be in place before the service starts.
reg=/etc/containers/registries.conf
if ! grep -q 'lyre-tests' "$reg" 2>/dev/null; then
    printf '\n# lyre-tests: local test registries on any port\n[[registry]]\nlocation = "127.0.0.1"\ninsecure = true\n' >> "$reg"
fi

# A tiny image without any registry: busybox applets in an otherwise empty rootfs, plus a
# fake /etc/os-release so install_certificates picks the Debian CA directory.
image=localhost/lyre-busybox:2
if ! podman image exists "$image"; then
    tmp=$(mktemp -d)
    mkdir -p "$tmp/rootfs/bin" "$tmp/rootfs/etc" "$tmp/rootfs/tmp"
    cp "$(command -v busybox)" "$tmp/rootfs/bin/busybox"
    for a in sh echo sleep cat ls env mkdir rm true false test tar; do
        ln -s busybox "$tmp/rootfs/bin/$a"
    done
    printf 'PRETTY_NAME="Lyre test (Debian-like)"\nID=debian\n' > "$tmp/rootfs/etc/os-release"
    # update-ca-certificates stand-in: records that it ran.
    printf '#!/bin/sh\necho ran > /tmp/update-ca-certificates.ran\n' > "$tmp/rootfs/bin/update-ca-certificates"
    chmod +x "$tmp/rootfs/bin/update-ca-certificates"
    tar -C "$tmp/rootfs" -cf "$tmp/rootfs.tar" .
    # PID 1 must exit on SIGTERM, or every stop waits out the engine's 10 s grace period.
    podman import -q --change 'CMD ["/bin/sh", "-c", "trap \"exit 0\" TERM; sleep 3600 & wait"]' \
        "$tmp/rootfs.tar" "$image" >/dev/null
    rm -rf "$tmp"
fi
echo "podman ready: $(podman --version), image $image"
