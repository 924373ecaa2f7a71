#!/usr/bin/env bash
# The seed's scenario on this machine, no cluster, no network.
#
# A tenant's pod is restricted to runAsUser 1000 / runAsGroup 1000 / supplementalGroups [60000].
# The tenant's image puts alice into group 50000 through /etc/group; containerd and CRI-O merge
# that into the OCI spec, so the container would run with groups 1000,50000,60000 and could read
# a shared directory owned by group 50000. The same bundle is run twice with this runtime:
#   1. without pod annotations (as an admin's `ctr run` would): groups as the spec says;
#   2. as the pod's container (containerd's annotations, the pod looked up in demo/pods.json):
#      50000 is removed before the container is created.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
runtime="$(realpath "${1:?usage: demo.sh <path to strict-supplementalgroups-container-runtime>}")"

if [ "$(id -u)" -ne 0 ]; then
  echo "demo: creating containers needs root (try: sudo $0 $*)" >&2
  exit 1
fi
if [ ! -x /bin/busybox ]; then
  echo "demo: installing busybox-static (the demo image is built from it)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static >/dev/null
fi

work="$(mktemp -d /tmp/strict-sg-demo.XXXXXX)"
root="$work/state"
cleanup() {
  for id in demo-unmanaged demo-pod; do
    "$runtime" --root "$root" delete --force "$id" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# The image: busybox, alice (1000:1000), and /etc/group adding alice to bypassed (50000).
rootfs="$work/bundle/rootfs"
mkdir -p "$rootfs"/{bin,etc,proc,sys,dev,tmp,shared}
cp /bin/busybox "$rootfs/bin/busybox"
for applet in sh id cat ls; do ln -s busybox "$rootfs/bin/$applet"; done
printf 'root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nalice:x:1000:\nbypassed:x:50000:alice\n' >"$rootfs/etc/group"

# The shared directory that only group 50000 may read (a hostPath or NFS export in real life).
mkdir -p "$work/shared-50000"
echo "payroll of another team" >"$work/shared-50000/secret.txt"
chown -R 0:50000 "$work/shared-50000"
chmod 0750 "$work/shared-50000"
chmod 0640 "$work/shared-50000/secret.txt"

write_config() { # $1 = annotations JSON object
  cat >"$work/bundle/config.json" <<JSON
{
  "ociVersion": "1.0.2-dev",
  "process": {
    "user": { "uid": 1000, "gid": 1000, "additionalGids": [1000, 50000, 60000] },
    "args": ["sh", "-c", "echo \"  id:   \$(id)\"; echo \"  read: \$(cat /shared/secret.txt 2>&1)\""],
    "env": ["PATH=/bin"],
    "cwd": "/",
    "noNewPrivileges": true
  },
  "root": { "path": "rootfs" },
  "mounts": [
    { "destination": "/proc", "type": "proc", "source": "proc" },
    { "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"] },
    { "destination": "/shared", "type": "bind", "source": "$work/shared-50000", "options": ["rbind", "ro"] }
  ],
  "annotations": $1,
  "linux": {
    "cgroupsPath": "/strict-sg-demo/\$\$",
    "namespaces": [ { "type": "pid" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" } ]
  }
}
JSON
}

gids_of() { tr -d ' \n' <"$1" | grep -o '"additionalGids":\[[^]]*\]' | cut -d: -f2; }

cat >"$work/config.toml" <<TOML
pod-groups-source = "file"
pods-file = "$here/pods.json"
TOML
export STRICT_SUPPLEMENTALGROUPS_CONFIG="$work/config.toml"

echo "== 1. the tenant's image, run without pod annotations (as ctr run would): passed through"
write_config '{}'
echo "  spec: additionalGids $(gids_of "$work/bundle/config.json")"
(cd "$work/bundle" && "$runtime" --root "$root" run --bundle "$work/bundle" demo-unmanaged) |
  tee "$work/unmanaged.out"

echo
echo "== 2. the same image as container 'app' of pod user-alice/bypass-pod (supplementalGroups [60000])"
write_config '{
    "io.kubernetes.cri.container-type": "container",
    "io.kubernetes.cri.container-name": "app",
    "io.kubernetes.cri.sandbox-namespace": "user-alice",
    "io.kubernetes.cri.sandbox-name": "bypass-pod",
    "io.kubernetes.cri.sandbox-uid": "5d7a1c1e-0d6e-4c1b-9a38-bypass000001",
    "io.kubernetes.cri.sandbox-id": "demo-sandbox"
  }'
echo "  decision (explain):"
"$runtime" --root "$root" explain --bundle "$work/bundle" demo-pod | sed 's/^/    /'
(cd "$work/bundle" && "$runtime" --root "$root" --log "$work/log.json" --log-format json \
  run --bundle "$work/bundle" demo-pod) | tee "$work/pod.out"
echo "  spec after the stage: additionalGids $(gids_of "$work/bundle/config.json")"
echo "  audit line: $(grep 'supplementary groups' "$work/log.json" | tail -1)"

# The demo is also a check (CI runs it): each half must show what it claims.
expect() { # file, grep pattern, what it means
  grep -q -- "$2" "$1" || { echo "demo: FAILED: $3" >&2; exit 1; }
}
expect "$work/unmanaged.out" '50000(bypassed)' "the unmanaged run keeps the image's group 50000"
expect "$work/unmanaged.out" 'payroll' "the unmanaged run can read the group-50000 file"
expect "$work/pod.out" 'groups=1000(alice),60000$' "the pod's container has exactly 1000,60000"
expect "$work/pod.out" 'Permission denied' "the pod's container cannot read the group-50000 file"
[ "$(gids_of "$work/bundle/config.json")" = "[1000,60000]" ] ||
  { echo "demo: FAILED: config.json keeps 50000" >&2; exit 1; }
