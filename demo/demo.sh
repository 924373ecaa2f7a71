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
# Then the two neighbours of that hole, which Kubernetes' own Strict policy leaves open:
#   3. the pod without runAsGroup, its image's /etc/passwd giving alice primary gid 50000:
#      kept under primary-gid = "image" (the default, Strict's behaviour), refused under
#      primary-gid = "granted";
#   4. a setgid binary of group 50000 in the image, with noNewPrivileges false (Kubernetes'
#      default): it regains 50000 under no-new-privileges = "unchanged" (the default), and
#      cannot under no-new-privileges = "set".
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
  for id in demo-unmanaged demo-pod demo-passwd-image demo-passwd-granted demo-sgid-unchanged \
    demo-sgid-set; do
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

default_user='{ "uid": 1000, "gid": 1000, "additionalGids": [1000, 50000, 60000] }'
default_args='["sh", "-c", "echo \"  id:   $(id)\"; echo \"  read: $(cat /shared/secret.txt 2>&1)\""]'
write_config() { # $1 = annotations JSON object, [$2 = user, $3 = args, $4 = noNewPrivileges]
  local user="${2:-$default_user}" args="${3:-$default_args}"
  cat >"$work/bundle/config.json" <<JSON
{
  "ociVersion": "1.0.2-dev",
  "process": {
    "user": $user,
    "args": $args,
    "env": ["PATH=/bin"],
    "cwd": "/",
    "noNewPrivileges": ${4:-true}
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

write_runtime_config() { # extra TOML lines
  printf 'pod-groups-source = "file"\npods-file = "%s"\n%s\n' "$here/pods.json" "${1:-}" >"$work/config.toml"
}
write_runtime_config
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

pod_annotations() { # $1 = pod name, $2 = pod uid
  printf '{
    "io.kubernetes.cri.container-type": "container",
    "io.kubernetes.cri.container-name": "app",
    "io.kubernetes.cri.sandbox-namespace": "user-alice",
    "io.kubernetes.cri.sandbox-name": "%s",
    "io.kubernetes.cri.sandbox-uid": "%s",
    "io.kubernetes.cri.sandbox-id": "demo-sandbox",
    "io.kubernetes.cri.image-name": "registry.example/bypass-supplementalgroups:latest"
  }' "$1" "$2"
}

echo
echo "== 3. pod user-alice/passwd-pod: runAsUser 1000 but no runAsGroup; the image's /etc/passwd"
echo "      says alice:x:1000:50000, so containerd runs the container with gid 50000"
printf 'root:x:0:0:root:/root:/bin/sh\nalice:x:1000:50000::/home/alice:/bin/sh\n' >"$rootfs/etc/passwd"
passwd_user='{ "uid": 1000, "gid": 50000, "additionalGids": [50000, 60000] }'
echo "  primary-gid = \"image\" (the default; Kubernetes' Strict policy keeps it too):"
write_config "$(pod_annotations passwd-pod 5d7a1c1e-0d6e-4c1b-9a38-passwd000002)" "$passwd_user"
(cd "$work/bundle" && "$runtime" --root "$root" run --bundle "$work/bundle" demo-passwd-image) |
  tee "$work/passwd-image.out"
echo "  primary-gid = \"granted\":"
write_runtime_config 'primary-gid = "granted"'
write_config "$(pod_annotations passwd-pod 5d7a1c1e-0d6e-4c1b-9a38-passwd000002)" "$passwd_user"
# With --log a file, the runtime writes the error there (for the shim) and to stderr.
if (cd "$work/bundle" && "$runtime" --root "$root" --log "$work/passwd.log" --log-format json \
  run --bundle "$work/bundle" demo-passwd-granted >/dev/null 2>"$work/passwd-granted.msg"); then
  echo "demo: FAILED: primary-gid = granted ran the container" >&2
  exit 1
fi
fold -s -w 96 "$work/passwd-granted.msg" | sed 's/^/  refused: /;2,$s/^  refused: /           /'
printf 'root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n' >"$rootfs/etc/passwd"
write_runtime_config

echo
echo "== 4. pod user-alice/bypass-pod again, its image now also holding /bin/sgid-reader: setgid,"
echo "      group 50000; noNewPrivileges false (allowPrivilegeEscalation unset, Kubernetes' default)"
cc -static -O2 -o "$rootfs/bin/sgid-reader" -x c - <<'C'
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
int main(void) {
    char buf[128];
    int fd = open("/shared/secret.txt", O_RDONLY);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    if (n > 0 && buf[n - 1] == '\n') buf[n - 1] = 0;
    printf("  sgid: egid=%d read: %s\n", (int)getegid(), n > 0 ? buf : "Permission denied");
    return 0;
}
C
chown 0:50000 "$rootfs/bin/sgid-reader"
chmod 2755 "$rootfs/bin/sgid-reader"
sgid_args='["sh", "-c", "echo \"  id:   $(id)\"; /bin/sgid-reader"]'
for nnp in unchanged set; do
  echo "  no-new-privileges = \"$nnp\":"
  write_runtime_config "no-new-privileges = \"$nnp\""
  write_config "$(pod_annotations bypass-pod 5d7a1c1e-0d6e-4c1b-9a38-bypass000001)" "" "$sgid_args" false
  (cd "$work/bundle" && "$runtime" --root "$root" run --bundle "$work/bundle" "demo-sgid-$nnp") |
    tee "$work/sgid-$nnp.out"
done

# The demo is also a check (CI runs it): each half must show what it claims.
expect() { # file, grep pattern, what it means
  grep -q -- "$2" "$1" || { echo "demo: FAILED: $3" >&2; exit 1; }
}
expect "$work/unmanaged.out" '50000(bypassed)' "the unmanaged run keeps the image's group 50000"
expect "$work/unmanaged.out" 'payroll' "the unmanaged run can read the group-50000 file"
expect "$work/pod.out" 'groups=1000(alice),60000$' "the pod's container has exactly 1000,60000"
expect "$work/pod.out" 'Permission denied' "the pod's container cannot read the group-50000 file"
expect "$work/passwd-image.out" 'gid=50000(' "primary-gid = image keeps the passwd's gid 50000"
expect "$work/passwd-image.out" 'payroll' "with gid 50000 the group-50000 file is readable"
expect "$work/passwd-granted.msg" 'primary gid 50000 is not granted' "primary-gid = granted refuses 50000"
expect "$work/passwd-granted.msg" 'runAsGroup' "the refusal names the fix"
expect "$work/sgid-unchanged.out" 'groups=1000(alice),60000$' "the filter applies under unchanged"
expect "$work/sgid-unchanged.out" 'egid=50000 read: payroll' "the setgid binary regains 50000 under unchanged"
expect "$work/sgid-set.out" 'egid=1000 read: Permission denied' "no-new-privileges = set closes it"
