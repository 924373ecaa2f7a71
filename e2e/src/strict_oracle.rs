//! Kubernetes' own `supplementalGroupsPolicy: Strict` as the oracle. Every case pod runs
//! through this runtime (CRI policy `Merge`, the default) on each containerd line, and — on
//! containerd 2.x, the first line that implements the policy — once more through plain runc
//! with the CRI field `supplemental_groups_policy = Strict`. The init process and an exec must
//! show the same primary gid and the same set of supplementary groups (and, for the setgid
//! image, the same probe line), except where `explained` lists a difference the README
//! explains.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::cri::{ClaimedVolume, PodDecl, ReportedUser};
use crate::explained::{self, Instead};
use crate::groups::Identity;
use crate::images::{
    BYPASS_REF, NO_EXTRA_GROUP_REF, PASSWD_GID_REF, ROOT_IN_GROUP_REF, SETGID_REF,
};
use crate::report::Report;

const SUITE: &str = "Strict oracle";
const NAMESPACE: &str = "e2e-tenant";

/// One comparison case: a pod and the runtime config it runs under.
#[derive(Clone, Debug)]
pub struct Case {
    /// `<pod>` or `<pod>/<config variant>`; unique.
    pub key: &'static str,
    /// What the pod is, for the table.
    pub label: &'static str,
    /// The pod as this runtime runs it (policy Merge).
    pub pod: PodDecl,
    /// Top-level runtime config keys set while its container is created and exec'd into.
    pub runtime_config: &'static str,
    /// The case whose Strict run this one is compared with (its own key for a pod without a
    /// config variant).
    pub baseline: &'static str,
    /// Whether the container runs the setgid probe.
    pub probe: bool,
}

impl Case {
    /// Cases without a config variant also run under Strict.
    pub fn runs_under_strict(&self) -> bool {
        self.baseline == self.key
    }

    /// The same pod with `supplementalGroupsPolicy: Strict`, under another name.
    pub fn strict_pod(&self) -> PodDecl {
        let mut pod = self.pod.clone();
        pod.name = format!("{}-strict", pod.name);
        pod.uid = format!("{}-strict", pod.uid);
        pod.strict = true;
        pod
    }
}

/// The cases, with pod names and uids unique per run and line.
pub fn cases(run_id: &str, line: &str) -> Vec<Case> {
    let line = line.replace('.', "");
    let pod = |name: &str, image: &str| {
        let mut pod = PodDecl::new(
            NAMESPACE,
            &format!("cmp-{name}"),
            &format!("cmp-{name}-{run_id}-{line}"),
        );
        pod.image = image.to_owned();
        pod.supplemental_groups = vec![60000];
        pod
    };
    let base = |key: &'static str, label: &'static str, pod: PodDecl| Case {
        key,
        label,
        pod,
        runtime_config: "",
        baseline: key,
        probe: false,
    };
    let variant = |of: &Case, key: &'static str, config: &'static str| {
        let mut pod = of.pod.clone();
        let suffix = key.rsplit('/').next().unwrap_or(key);
        pod.name = format!("{}-{suffix}", pod.name);
        pod.uid = format!("{}-{suffix}", pod.uid);
        Case {
            key,
            label: of.label,
            pod,
            runtime_config: config,
            baseline: of.key,
            probe: of.probe,
        }
    };

    let bypass = base(
        "bypass",
        "bypass image (/etc/group adds 50000), runAsGroup 1000, supplementalGroups [60000]",
        pod("bypass", BYPASS_REF),
    );
    let mut p = pod("fsgroup", BYPASS_REF);
    p.fs_group = Some(70000);
    let fsgroup = base("fsgroup", "bypass image, [60000] + fsGroup 70000", p);
    let mut p = pod("no-run-as-group", BYPASS_REF);
    p.run_as_group = None;
    let no_run_as_group = base(
        "no-run-as-group",
        "bypass image, no runAsGroup (gid 1000 from the image's passwd), [60000]",
        p,
    );
    let no_extra_group = base(
        "no-extra-group",
        "image whose user is in no extra group, runAsGroup 1000, [60000]",
        pod("no-extra-group", NO_EXTRA_GROUP_REF),
    );
    let mut p = pod("run-as-root", ROOT_IN_GROUP_REF);
    p.run_as_user = 0;
    p.run_as_group = None;
    let run_as_root = base(
        "run-as-root",
        "runAsUser 0, no runAsGroup; /etc/group adds root to 50000; [60000]",
        p,
    );
    let mut p = pod("duplicate-gids", BYPASS_REF);
    p.supplemental_groups = vec![60000, 60000, 1000];
    p.fs_group = Some(60000);
    let duplicates = base(
        "duplicate-gids",
        "bypass image, [60000, 60000, 1000] + fsGroup 60000",
        p,
    );
    let mut p = pod("pv-gid", BYPASS_REF);
    p.volumes = vec![ClaimedVolume {
        claim: "shared-data".into(),
        claim_uid: format!("claim-{run_id}-{line}"),
        volume: format!("pv-shared-{run_id}-{line}"),
        gid: Some(70001),
    }];
    let pv_gid = base(
        "pv-gid",
        "bypass image, [60000], PVC bound to a PV with pv.beta.kubernetes.io/gid 70001",
        p,
    );
    let mut p = pod("passwd-gid", PASSWD_GID_REF);
    p.run_as_group = None;
    let passwd_gid = base(
        "passwd-gid",
        "image whose passwd gives alice gid 50000, no runAsGroup, [60000]",
        p,
    );
    let mut setgid = base(
        "setgid",
        "setgid image (probe root:50000 2755), allowPrivilegeEscalation unset",
        pod("setgid", SETGID_REF),
    );
    setgid.probe = true;
    let mut p = pod("setgid-ape-false", SETGID_REF);
    p.allow_privilege_escalation = Some(false);
    let mut setgid_ape_false = base(
        "setgid-ape-false",
        "setgid image, allowPrivilegeEscalation: false",
        p,
    );
    setgid_ape_false.probe = true;

    // The pod asks for Strict itself and runs through this runtime: containerd 2.x filters
    // first (the runtime's filter then has nothing to drop); 1.6 and 1.7 do not know the CRI
    // field and merge, and the runtime filters.
    let mut both = variant(&bypass, "bypass/strict-pod", "");
    both.pod.strict = true;
    both.label = "bypass pod asking for supplementalGroupsPolicy: Strict itself";
    let variants = vec![
        both,
        variant(&bypass, "bypass/granted", "primary-gid = \"granted\""),
        variant(
            &no_run_as_group,
            "no-run-as-group/granted-or-uid",
            "primary-gid = \"granted-or-uid\"",
        ),
        variant(
            &passwd_gid,
            "passwd-gid/granted",
            "primary-gid = \"granted\"",
        ),
        variant(&setgid, "setgid/nnp-set", "no-new-privileges = \"set\""),
        variant(
            &setgid,
            "setgid/nnp-refuse",
            "no-new-privileges = \"refuse\"",
        ),
        variant(
            &setgid_ape_false,
            "setgid-ape-false/nnp-refuse",
            "no-new-privileges = \"refuse\"",
        ),
    ];
    let mut all = vec![
        bypass,
        fsgroup,
        no_run_as_group,
        no_extra_group,
        run_as_root,
        duplicates,
        pv_gid,
        passwd_gid,
        setgid,
        setgid_ape_false,
    ];
    all.extend(variants);
    all
}

/// What one run of a case showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ran(Observed),
    /// CreateContainer or StartContainer failed; the CRI's error text.
    Refused(String),
    /// The harness could not observe the container (it died, ExecSync failed, …).
    Broken(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// The container's init process (/proc/<pid>/status).
    pub init: Identity,
    /// An ExecSync of `cat /proc/self/status`.
    pub exec: Identity,
    /// The setgid probe's line, from the init's log and from an ExecSync of the probe.
    pub probe_init: Option<String>,
    pub probe_exec: Option<String>,
}

impl Observed {
    fn show(&self) -> String {
        let mut s = if self.init == self.exec {
            self.init.show()
        } else {
            format!("init {}; exec {}", self.init.show(), self.exec.show())
        };
        match (&self.probe_init, &self.probe_exec) {
            (Some(a), Some(b)) if a == b => write!(s, "; probe {a}").unwrap_or_default(),
            (None, None) => {}
            (a, b) => write!(
                s,
                "; probe init {} exec {}",
                a.as_deref().unwrap_or("-"),
                b.as_deref().unwrap_or("-")
            )
            .unwrap_or_default(),
        }
        s
    }
}

impl Outcome {
    pub fn show(&self) -> String {
        match self {
            Outcome::Ran(o) => o.show(),
            Outcome::Refused(e) => format!("refused: {}", runtime_message(e)),
            Outcome::Broken(e) => format!(
                "broken: {}",
                e.split_whitespace().collect::<Vec<_>>().join(" ")
            ),
        }
    }
}

/// The runtime's own words in a CRI error (after containerd's wrapping).
fn runtime_message(err: &str) -> String {
    let from = ["create failed: ", "OCI runtime create failed: "]
        .iter()
        .find_map(|m| err.find(m).map(|at| at + m.len()))
        .unwrap_or(0);
    // One line for the table: containerd passes multi-line errors through.
    let msg = err[from..].split_whitespace().collect::<Vec<_>>().join(" ");
    if msg.chars().count() > 160 {
        format!("{}…", msg.chars().take(160).collect::<String>())
    } else {
        msg
    }
}

/// The results of every line, and the verdicts.
#[derive(Default)]
pub struct Oracle {
    cases: Vec<Case>,
    /// "containerd 2.1.9 + runc 1.1.5"
    strict_env: Option<String>,
    strict: BTreeMap<&'static str, Outcome>,
    /// (containerd version, outcomes by case key), in line order.
    runtime: Vec<(String, BTreeMap<&'static str, Outcome>)>,
    /// `ContainerStatus.user` as containerd 2.x reported it, by case key: (Strict, runtime).
    pub reported: BTreeMap<&'static str, (Option<ReportedUser>, Option<ReportedUser>)>,
}

impl Oracle {
    /// Records the case list (the same keys on every line).
    pub fn set_cases(&mut self, cases: &[Case]) {
        if self.cases.is_empty() {
            self.cases = cases.to_vec();
        }
    }

    pub fn record_strict(&mut self, env: &str, key: &'static str, outcome: Outcome) {
        self.strict_env = Some(env.to_owned());
        self.strict.insert(key, outcome);
    }

    pub fn record_runtime(&mut self, containerd: &str, key: &'static str, outcome: Outcome) {
        match self.runtime.iter_mut().find(|(v, _)| v == containerd) {
            Some((_, map)) => {
                map.insert(key, outcome);
            }
            None => self
                .runtime
                .push((containerd.to_owned(), BTreeMap::from([(key, outcome)]))),
        }
    }

    /// This runtime's outcome of case `key` on containerd `version`.
    pub fn runtime_outcome(&self, version: &str, key: &str) -> Option<&Outcome> {
        self.runtime
            .iter()
            .find(|(v, _)| v == version)
            .and_then(|(_, m)| m.get(key))
    }

    /// One verdict per case and line: the same as Strict, or different exactly as an
    /// `explained` entry says.
    fn verdict(&self, case: &Case, outcome: &Outcome) -> Verdict {
        let Some(strict) = self.strict.get(case.baseline) else {
            return Verdict::NoOracle;
        };
        if matches!(strict, Outcome::Broken(_) | Outcome::Refused(_)) {
            return Verdict::Fail(format!(
                "the Strict run itself did not work: {}",
                strict.show()
            ));
        }
        let explained = explained::for_case(case.key);
        match (explained, outcome == strict) {
            (None, true) => Verdict::Same,
            (None, false) => Verdict::Fail(
                "differs from Strict, and the README explains no difference here".into(),
            ),
            (Some(e), true) => Verdict::Fail(format!(
                "the same as Strict, but {} says this runtime differs here",
                e.readme
            )),
            (Some(e), false) => match (e.instead, outcome, strict) {
                (Instead::Refused(words), Outcome::Refused(err), _) => {
                    let missing: Vec<&str> =
                        words.iter().copied().filter(|w| !err.contains(w)).collect();
                    if missing.is_empty() {
                        Verdict::Explained(e.readme)
                    } else {
                        Verdict::Fail(format!("refused, but the error lacks {missing:?}"))
                    }
                }
                (Instead::Probe(line), Outcome::Ran(got), Outcome::Ran(want)) => {
                    let groups_same = got.init == want.init && got.exec == want.exec;
                    let probe_as_said = got.probe_init.as_deref() == Some(line)
                        && got.probe_exec.as_deref() == Some(line);
                    if groups_same && probe_as_said {
                        Verdict::Explained(e.readme)
                    } else {
                        Verdict::Fail(format!(
                            "expected Strict's groups and probe {line:?} ({})",
                            e.readme
                        ))
                    }
                }
                _ => Verdict::Fail(format!("expected {:?} ({})", e.instead, e.readme)),
            },
        }
    }

    /// Adds a report row per case and returns the comparison table.
    pub fn conclude(&self, report: &mut Report) -> String {
        let t = std::time::Instant::now();
        let mut table = String::new();
        let strict_col = match &self.strict_env {
            Some(env) => format!("Strict ({env})"),
            None => "Strict (not run: containerd 2.x not among the lines)".to_owned(),
        };
        let runtime_cols: Vec<String> = self
            .runtime
            .iter()
            .map(|(v, _)| format!("this runtime, containerd {v}"))
            .collect();
        let _ = writeln!(
            table,
            "\nStrict oracle: pod × {{{strict_col}, {}}} → primary gid, supplementary groups \
             (init = exec unless shown), setgid probe; \"=\" is the same as Strict\n",
            runtime_cols.join(", ")
        );
        let _ = writeln!(
            table,
            "| pod (runtime config) | {strict_col} | {} | verdict |",
            runtime_cols.join(" | ")
        );
        let _ = writeln!(table, "|---|---|{}---|", "---|".repeat(runtime_cols.len()));
        for case in &self.cases {
            let strict = self.strict.get(case.baseline);
            let strict_cell = match (strict, case.runs_under_strict()) {
                (Some(o), true) => o.show(),
                (Some(_), false) => format!("as {}", case.baseline),
                (None, _) => "-".to_owned(),
            };
            let mut cells = Vec::new();
            let mut verdicts = Vec::new();
            for (version, outcomes) in &self.runtime {
                match outcomes.get(case.key) {
                    None => cells.push("not run".to_owned()),
                    Some(o) => {
                        let v = self.verdict(case, o);
                        cells.push(if strict == Some(o) {
                            "=".to_owned()
                        } else {
                            o.show()
                        });
                        verdicts.push((version.clone(), v));
                    }
                }
            }
            let failed: Vec<String> = verdicts
                .iter()
                .filter_map(|(v, verdict)| match verdict {
                    Verdict::Fail(why) => Some(format!("{v}: {why}")),
                    _ => None,
                })
                .collect();
            let summary = if !failed.is_empty() {
                "DIFFERS".to_owned()
            } else if verdicts
                .iter()
                .any(|(_, v)| matches!(v, Verdict::Explained(_)))
            {
                let readme = verdicts
                    .iter()
                    .find_map(|(_, v)| match v {
                        Verdict::Explained(r) => Some(*r),
                        _ => None,
                    })
                    .unwrap_or_default();
                format!("differs as {readme} says")
            } else if verdicts.iter().all(|(_, v)| matches!(v, Verdict::NoOracle)) {
                "no oracle".to_owned()
            } else {
                "same".to_owned()
            };
            let config = if case.runtime_config.is_empty() {
                String::new()
            } else {
                format!(" (`{}`)", case.runtime_config)
            };
            let cells: Vec<String> = cells.iter().map(|c| cell(c)).collect();
            let _ = writeln!(
                table,
                "| {} — {}{config} | {} | {} | {summary} |",
                case.key,
                case.label,
                cell(&strict_cell),
                cells.join(" | ")
            );
            if self.strict.is_empty() {
                // Nothing to judge against; one row below says so.
                continue;
            }
            let runs = verdicts.len();
            report.add(
                SUITE,
                &format!("{}{config}", case.key),
                match explained::for_case(case.key) {
                    Some(e) => format!("differs from Strict as {} says: {:?}", e.readme, e.instead),
                    None => "the same as Strict on every line".to_owned(),
                },
                if failed.is_empty() {
                    format!("{summary} ({runs} lines)")
                } else {
                    failed.join("; ")
                },
                failed.is_empty() && runs > 0,
                t,
            );
        }
        if self.strict.is_empty() && !self.cases.is_empty() {
            report.add(
                SUITE,
                "comparison with Strict",
                "judged only when containerd 2.x runs (the first line with the policy)",
                "not judged: containerd 2.x was not among --lines; the table shows this \
                 runtime's results alone",
                true,
                t,
            );
        }
        table
    }
}

/// A markdown table cell: `|` escaped.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

#[derive(Debug)]
enum Verdict {
    Same,
    Explained(&'static str),
    NoOracle,
    Fail(String),
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn ran(gid: u32, groups: &[u32], probe: Option<&str>) -> Outcome {
        let id = Identity {
            gid: [gid; 4],
            groups: groups.iter().copied().collect::<BTreeSet<u32>>(),
        };
        Outcome::Ran(Observed {
            init: id.clone(),
            exec: id,
            probe_init: probe.map(str::to_owned),
            probe_exec: probe.map(str::to_owned),
        })
    }

    fn oracle_with(strict: &[(&'static str, Outcome)]) -> (Oracle, Vec<Case>) {
        let cases = cases("t", "2.x");
        let mut oracle = Oracle::default();
        oracle.set_cases(&cases);
        for (key, outcome) in strict {
            oracle.record_strict("containerd 2.1.9 + runc", key, outcome.clone());
        }
        (oracle, cases)
    }

    fn case<'a>(cases: &'a [Case], key: &str) -> &'a Case {
        cases.iter().find(|c| c.key == key).unwrap()
    }

    #[test]
    fn same_as_strict_passes_and_any_other_difference_fails() {
        let (oracle, cases) = oracle_with(&[("bypass", ran(1000, &[1000, 60000], None))]);
        let bypass = case(&cases, "bypass");
        assert!(matches!(
            oracle.verdict(bypass, &ran(1000, &[1000, 60000], None)),
            Verdict::Same
        ));
        for other in [
            ran(1000, &[1000, 50000, 60000], None),
            ran(50000, &[1000, 60000], None),
            Outcome::Refused("create failed: nope".into()),
            Outcome::Broken("ExecSync failed".into()),
        ] {
            assert!(
                matches!(oracle.verdict(bypass, &other), Verdict::Fail(_)),
                "{other:?}"
            );
        }
        // A variant is judged against its baseline's Strict run.
        let granted = case(&cases, "bypass/granted");
        assert!(matches!(
            oracle.verdict(granted, &ran(1000, &[1000, 60000], None)),
            Verdict::Same
        ));
    }

    #[test]
    fn an_explained_difference_must_show_exactly_as_explained() {
        let probe_strict = "rgid=1000 egid=50000 read=ok";
        let (oracle, cases) = oracle_with(&[
            ("passwd-gid", ran(50000, &[50000, 60000], None)),
            ("setgid", ran(1000, &[1000, 60000], Some(probe_strict))),
        ]);
        let granted = case(&cases, "passwd-gid/granted");
        let refused = Outcome::Refused(
            "StartContainer: … create failed: primary gid 50000 … set runAsGroup".into(),
        );
        assert!(matches!(
            oracle.verdict(granted, &refused),
            Verdict::Explained(_)
        ));
        // Refused for another reason, or not refused at all: the README would be wrong.
        let unrelated = Outcome::Refused("create failed: unknown key primary-gid".into());
        assert!(matches!(
            oracle.verdict(granted, &unrelated),
            Verdict::Fail(_)
        ));
        assert!(matches!(
            oracle.verdict(granted, &ran(50000, &[50000, 60000], None)),
            Verdict::Fail(_)
        ));

        let set = case(&cases, "setgid/nnp-set");
        let closed = "rgid=1000 egid=1000 read=denied";
        assert!(matches!(
            oracle.verdict(set, &ran(1000, &[1000, 60000], Some(closed))),
            Verdict::Explained(_)
        ));
        // The probe closed but the groups changed too: not what the README says.
        assert!(matches!(
            oracle.verdict(set, &ran(1000, &[1000], Some(closed))),
            Verdict::Fail(_)
        ));
        assert!(matches!(
            oracle.verdict(set, &ran(1000, &[1000, 60000], Some(probe_strict))),
            Verdict::Fail(_)
        ));
    }

    #[test]
    fn without_a_strict_run_there_is_no_verdict() {
        let (oracle, cases) = oracle_with(&[]);
        assert!(matches!(
            oracle.verdict(case(&cases, "bypass"), &ran(1000, &[1000], None)),
            Verdict::NoOracle
        ));
    }

    #[test]
    fn case_keys_are_unique_and_baselines_exist() {
        let cases = cases("t", "1.6");
        let keys: BTreeSet<&str> = cases.iter().map(|c| c.key).collect();
        assert_eq!(keys.len(), cases.len());
        for c in &cases {
            let base = case(&cases, c.baseline);
            assert!(
                base.runs_under_strict(),
                "{} has baseline {}",
                c.key,
                c.baseline
            );
        }
        let names: BTreeSet<&str> = cases.iter().map(|c| c.pod.name.as_str()).collect();
        assert_eq!(names.len(), cases.len(), "pod names collide");
    }
}
