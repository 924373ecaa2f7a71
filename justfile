# strict-supplementalgroups-container-runtime — task runner.
# Run `scripts/bootstrap` once first (as root): it installs the Debian packages and `just`.

set shell := ["bash", "-euo", "pipefail", "-c"]

runtime := "strict-supplementalgroups-container-runtime"

# List the recipes
default:
    @just --list

target := arch() + "-unknown-linux-gnu"
release := "target/" + target + "/release"

# The release build nodes run: glibc and libseccomp linked statically (it runs on any
# node, whatever its libraries), static-pie with packed relocations (ASLR kept, little
# start-up cost: the runtime starts for every container operation).
static_env := "LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=/usr/lib/" + arch() + "-linux-gnu"
static_flags := "-C target-feature=+crt-static -C link-arg=-Wl,-z,pack-relative-relocs"

# Build the release binaries (runtime and installer) into target/<triple>/release
build:
    {{static_env}} RUSTFLAGS="{{static_flags}}" cargo build --release --target {{target}} \
        -p {{runtime}} -p strict-supplementalgroups-installer --bins

# The seed's scenario on this machine: the bypass image with and without enforcement (root)
demo: build
    demo/demo.sh {{release}}/{{runtime}}

# The demo script against the debug build (CI keeps it true without a second, release build)
demo-smoke:
    cargo build --bin {{runtime}}
    demo/demo.sh target/debug/{{runtime}}

# The demo script and the benchmark harness run on the debug build the tests already made.
#
# Everything CI checks: lint, unit + integration, e2e, demo, bench and fuzz smoke runs
test: lint unit e2e demo-smoke bench-smoke fuzz-smoke

# Unit and integration tests of every crate (integration tests start real containers: root)
unit:
    cargo test --workspace

# rustfmt and clippy, warnings are errors
lint:
    cargo fmt --all --check
    cargo fmt --manifest-path fuzz/Cargo.toml --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Private containerd 1.6, 1.7 and 2.x driven over CRI like a kubelet (Kubernetes' Strict policy on
# 2.x as the oracle, and the latency a kubelet sees), and podman + conmon the way CRI-O drives a
# runtime, against a stand-in kubelet (see e2e/README.md). Options go to the harness, e.g.
# `just e2e --lines 2.x --latency-rounds 0`.
#
# End to end (root): containerd 1.6/1.7/2.x over CRI, Strict as the oracle, podman + conmon
e2e *args:
    cargo build --bin {{runtime}}
    cargo build -p strict-supplementalgroups-installer -p strict-supplementalgroups-e2e
    target/debug/strict-supplementalgroups-e2e --runtime target/debug/{{runtime}} {{args}}

# The numbers README quotes; latency is not pass/fail.
#
# The containerd e2e suite against the release build, with more latency rounds (root)
e2e-release rounds="36": build
    cargo build -p strict-supplementalgroups-installer -p strict-supplementalgroups-e2e
    target/debug/strict-supplementalgroups-e2e --runtime {{release}}/{{runtime}} --suite containerd --latency-rounds {{rounds}}

# The release build vs crun, runc (and youki 0.7 when installed), interleaved, all in the
# harness's private mount namespace (a hybrid host's cgroup2 mount hidden: crun refuses hybrid
# mode); writes target/bench/results.json and a markdown table (bench/README.md).
#
# Benchmarks (root), not pass/fail
bench *args: build
    cargo build --release -p strict-supplementalgroups-bench
    target/release/strict-supplementalgroups-bench --runtime {{release}}/{{runtime}} --out target/bench {{args}}

# The benchmark harness for a few rounds on the debug build, crun included (CI: it runs; no numbers)
bench-smoke:
    cargo build --bin {{runtime}}
    cargo build -p strict-supplementalgroups-bench
    target/debug/strict-supplementalgroups-bench --smoke --runtime target/debug/{{runtime}} --out target/bench/smoke

# Crashes land in fuzz/artifacts/<target>/ (fuzz/README.md). E.g. `just fuzz 1200`,
# `just fuzz 60 argv pod_list`.
#
# Coverage-guided fuzzing of every parser input reaches, `seconds` per target
fuzz seconds="60" *targets:
    fuzz/run {{seconds}} {{targets}}

# Every fuzz target for a few seconds (CI: none rots, the seeds and found crashes still pass)
fuzz-smoke:
    fuzz/run --smoke 5
