//! The launcher starts every containerd line the suites use (1.6 from Debian 12, 1.7 and 2.x
//! fetched by scripts/bootstrap) on a config of that line's version, isolated, and tears it
//! down. Needs root; a missing line skips, or fails under STRICT_SG_NO_SKIP=1 (CI).

use test_support::containerd::{
    CRI_PLUGIN, CRI_RUNTIME_PLUGIN_V3, Containerd, ContainerdLine, ContainerdOptions,
};
use test_support::skip;

fn minimal_config(line: ContainerdLine) -> String {
    match line.config_version() {
        3 => format!(
            "version = 3\n[plugins.'{CRI_RUNTIME_PLUGIN_V3}']\n  restrict_oom_score_adj = true\n\
             [plugins.'{CRI_RUNTIME_PLUGIN_V3}'.containerd.runtimes.runc]\n  \
             runtime_type = \"io.containerd.runc.v2\"\n"
        ),
        _ => format!(
            "version = 2\n[plugins.\"{CRI_PLUGIN}\"]\n  restrict_oom_score_adj = true\n\
             [plugins.\"{CRI_PLUGIN}\".containerd.runtimes.runc]\n  \
             runtime_type = \"io.containerd.runc.v2\"\n"
        ),
    }
}

#[test]
fn every_line_starts_isolated_and_reports_its_version() {
    if !skip::unless_root() {
        return;
    }
    test_support::process::become_subreaper().unwrap();
    for line in ContainerdLine::ALL {
        if let Err(err) = line.check_installed() {
            skip::skip(&format!("containerd {}: {err:#}", line.name()));
            continue;
        }
        let version = line.version().unwrap();
        let expected_prefix = match line {
            ContainerdLine::V1_6 => "1.6.",
            ContainerdLine::V1_7 => "1.7.",
            ContainerdLine::V2 => "2.",
        };
        assert!(
            version.starts_with(expected_prefix),
            "{}: {version}",
            line.name()
        );
        let containerd =
            Containerd::start(ContainerdOptions::new(minimal_config(line)).line(line)).unwrap();
        let out = containerd.ctr_ok(&["version"]).unwrap();
        assert!(
            out.contains(&version),
            "{}: ctr version says {out}",
            line.name()
        );
        let plugins = containerd.ctr_ok(&["plugins", "ls"]).unwrap();
        let cri_ok = plugins
            .lines()
            .any(|l| l.contains("io.containerd.grpc.v1") && l.contains("cri") && l.contains(" ok"));
        assert!(
            cri_ok,
            "{}: the CRI plugin did not load:\n{plugins}\n{}",
            line.name(),
            containerd.log_tail(20)
        );
        containerd.stop().unwrap();
        eprintln!(
            "containerd {} ({version}): started, CRI loaded, torn down",
            line.name()
        );
    }
}
