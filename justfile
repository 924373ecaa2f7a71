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

# Everything CI checks: lint, unit + integration tests, end-to-end, the demo script and the
# benchmark harness (both on the debug build the tests already made), and every fuzz target
# briefly
test: lint unit e2e demo-smoke bench-smoke fuzz-smoke

# Unit and integration tests of every crate (integration tests start real containers: root)
unit:
    cargo test --workspace

# rustfmt and clippy, warnings are errors
lint:
    cargo fmt --all --check
    cargo fmt --manifest-path fuzz/Cargo.toml --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# End to end (root): a private containerd driven over CRI like a kubelet, and podman + conmon
# the way CRI-O drives a runtime, against a stand-in kubelet (see e2e/README.md)
e2e:
    cargo build --bin {{runtime}}
    cargo build -p strict-supplementalgroups-e2e
    target/debug/strict-supplementalgroups-e2e --runtime target/debug/{{runtime}}

# Benchmarks (root): the release build vs runc (and youki 0.7 when installed), interleaved;
# writes target/bench/results.json and prints a markdown table (bench/README.md). Not pass/fail.
bench *args: build
    cargo build --release -p strict-supplementalgroups-bench
    target/release/strict-supplementalgroups-bench --runtime {{release}}/{{runtime}} --out target/bench {{args}}

# The benchmark harness for a few rounds on the debug build (CI: proves it runs; no numbers)
bench-smoke:
    cargo build --bin {{runtime}}
    cargo build -p strict-supplementalgroups-bench
    target/debug/strict-supplementalgroups-bench --smoke --runtime target/debug/{{runtime}} --out target/bench/smoke

# Coverage-guided fuzzing (cargo-fuzz, libFuzzer + AddressSanitizer) of every parser outside
# input reaches, `seconds` per target, on the seeds and what earlier runs found; crashes land in
# fuzz/artifacts/<target>/ (fuzz/README.md). E.g. `just fuzz 1200`, `just fuzz 60 argv pod_list`.
fuzz seconds="60" *targets:
    fuzz/run {{seconds}} {{targets}}

# Every fuzz target for a few seconds (CI: none rots, the seeds and found crashes still pass)
fuzz-smoke:
    fuzz/run --smoke 5
