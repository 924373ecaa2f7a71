//! results.json and the markdown table.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::stats::{Series, round3};

/// Everything measured in one run.
#[derive(Default)]
pub struct Results {
    pub cycle: Series,
    pub create: Series,
    pub start: Series,
    pub delete: Series,
    pub create_rss_kib: Series,
    /// In-process cost of create's group stage, from the runtime's audit line.
    pub create_stage: Series,
    pub ops_start: Series,
    pub ops_state: Series,
    pub exec: Series,
    /// In-process cost of the exec filter, from the runtime's audit line.
    pub exec_filter: Series,
    pub ops_kill: Series,
    pub ops_delete: Series,
    pub lookup: Series,
    pub explain: Series,
    pub exec_requests: usize,
    /// (name, path, bytes, version)
    pub binaries: Vec<(String, String, u64, String)>,
    pub meta: serde_json::Map<String, Value>,
    pub notes: Vec<String>,
    pub smoke: bool,
    /// Rounds discarded because runc or youki failed.
    pub failures: Vec<String>,
}

pub const FILE: &str = "ours-pod-file";
pub const CACHED: &str = "ours-pod-kubelet-cached";
pub const FIRST: &str = "ours-pod-kubelet-first";
pub const UNMANAGED: &str = "ours-unmanaged";
pub const RUNC: &str = "runc";
pub const YOUKI: &str = "youki";
pub const CRUN: &str = "crun";
/// `--compare`: the ours-pod-file workload run by another build.
pub const COMPARE: &str = "compare-pod-file";
/// The ours-pod-file workload with the runtime started already sealed (no re-exec).
pub const PRESEALED: &str = "ours-pod-file-presealed";
/// crun started from a read-only mount, so without its own re-exec.
pub const CRUN_PRESEALED: &str = "crun-presealed";

/// A ~95% confidence interval (low, high).
type Interval = (f64, f64);

pub struct Target {
    /// The issue that set it.
    pub issue: u32,
    pub name: String,
    pub measured: Option<f64>,
    /// ~95% confidence interval of the measured median.
    pub ci: Option<(f64, f64)>,
    pub limit: f64,
    pub unit: &'static str,
    pub met: Option<bool>,
}

fn target(
    issue: u32,
    name: &str,
    (measured, ci): (Option<f64>, Option<(f64, f64)>),
    limit: f64,
    unit: &'static str,
) -> Target {
    Target {
        issue,
        name: name.to_owned(),
        measured,
        ci,
        limit,
        unit,
        met: measured.map(|m| m <= limit),
    }
}

impl Target {
    /// The verdict, and whether the confidence interval leaves it open.
    pub fn verdict(&self) -> &'static str {
        match (self.met, self.ci) {
            (None, _) => "–",
            (Some(_), Some((lo, hi))) if lo <= self.limit && self.limit < hi => {
                if self.met == Some(true) {
                    "yes (within noise)"
                } else {
                    "no (within noise)"
                }
            }
            (Some(true), _) => "yes",
            (Some(false), _) => "no",
        }
    }
}

impl Results {
    pub fn reorder(&mut self, names: &[String]) {
        for s in [
            &mut self.cycle,
            &mut self.create,
            &mut self.start,
            &mut self.delete,
            &mut self.create_rss_kib,
            &mut self.create_stage,
            &mut self.ops_start,
            &mut self.ops_state,
            &mut self.exec,
            &mut self.exec_filter,
            &mut self.ops_kill,
            &mut self.ops_delete,
            &mut self.lookup,
            &mut self.explain,
        ] {
            s.reorder(names);
        }
    }

    /// Every ratio of the report: (name, series, numerator case, denominator case). Each is
    /// the median of per-round ratios.
    fn ratio_defs(&self) -> Vec<(&'static str, &Series, &'static str, &'static str)> {
        let c = &self.cycle;
        vec![
            ("enforced_vs_crun", c, FILE, CRUN),
            ("enforced_vs_runc", c, FILE, RUNC),
            ("enforced_vs_youki", c, FILE, YOUKI),
            ("kubelet_cached_vs_crun", c, CACHED, CRUN),
            ("kubelet_cached_vs_runc", c, CACHED, RUNC),
            ("kubelet_cached_vs_youki", c, CACHED, YOUKI),
            ("kubelet_first_vs_crun", c, FIRST, CRUN),
            ("kubelet_first_vs_runc", c, FIRST, RUNC),
            ("kubelet_first_vs_youki", c, FIRST, YOUKI),
            ("unmanaged_vs_crun", c, UNMANAGED, CRUN),
            ("unmanaged_vs_runc", c, UNMANAGED, RUNC),
            ("unmanaged_vs_youki", c, UNMANAGED, YOUKI),
            ("enforced_vs_unmanaged", c, FILE, UNMANAGED),
            ("runc_vs_crun", c, RUNC, CRUN),
            ("youki_vs_runc", c, YOUKI, RUNC),
            ("create_enforced_vs_crun", &self.create, FILE, CRUN),
            ("create_kubelet_cached_vs_crun", &self.create, CACHED, CRUN),
            ("create_unmanaged_vs_crun", &self.create, UNMANAGED, CRUN),
            ("exec_enforced_vs_crun", &self.exec, FILE, CRUN),
            ("exec_enforced_vs_runc", &self.exec, FILE, RUNC),
            ("exec_enforced_vs_youki", &self.exec, FILE, YOUKI),
            ("exec_unmanaged_vs_crun", &self.exec, UNMANAGED, CRUN),
            ("enforced_vs_compare", c, FILE, COMPARE),
            ("presealed_vs_crun", c, PRESEALED, CRUN),
            ("create_presealed_vs_crun", &self.create, PRESEALED, CRUN),
            ("exec_presealed_vs_crun", &self.exec, PRESEALED, CRUN),
            // Container setup alone: neither runtime re-execs itself.
            (
                "create_presealed_vs_crun_presealed",
                &self.create,
                PRESEALED,
                CRUN_PRESEALED,
            ),
            (
                "exec_presealed_vs_crun_presealed",
                &self.exec,
                PRESEALED,
                CRUN_PRESEALED,
            ),
            ("create_enforced_vs_compare", &self.create, FILE, COMPARE),
            ("exec_enforced_vs_compare", &self.exec, FILE, COMPARE),
            ("start_enforced_vs_crun", &self.ops_start, FILE, CRUN),
            ("state_enforced_vs_crun", &self.ops_state, FILE, CRUN),
            ("kill_enforced_vs_crun", &self.ops_kill, FILE, CRUN),
            ("delete_enforced_vs_crun", &self.ops_delete, FILE, CRUN),
        ]
    }

    pub fn ratios(&self) -> Vec<(&'static str, Option<f64>)> {
        self.ratio_defs()
            .into_iter()
            .map(|(name, s, a, b)| (name, s.ratio(a, b)))
            .collect()
    }

    /// Confidence intervals of the ratios, same names.
    pub fn ratio_cis(&self) -> Vec<(&'static str, Option<(f64, f64)>)> {
        self.ratio_defs()
            .into_iter()
            .map(|(name, s, a, b)| (name, s.ratio_ci(a, b)))
            .collect()
    }

    pub fn targets(&self) -> Vec<Target> {
        let c = &self.cycle;
        let lookup_growth = match (
            self.lookup.median("kubelet-1000"),
            self.lookup.median("kubelet-5000"),
        ) {
            (Some(a), Some(b)) => Some(b / a),
            _ => None,
        };
        let ratio = |s: &Series, a: &str, b: &str| (s.ratio(a, b), s.ratio_ci(a, b));
        let med = |s: &Series, a: &str| (s.median(a), s.median_ci(a));
        // Issue 14: crun, the C runtime picked when latency matters, is the peer to beat.
        let mut t = vec![
            target(
                14,
                "enforced cycle, file source ≤ 0.85 × crun",
                ratio(c, FILE, CRUN),
                0.85,
                "×",
            ),
            target(
                14,
                "enforced cycle, cached kubelet ≤ 0.85 × crun",
                ratio(c, CACHED, CRUN),
                0.85,
                "×",
            ),
            target(
                14,
                "`create` of an enforced pod container (file source) ≤ 1.0 × crun's",
                ratio(&self.create, FILE, CRUN),
                1.0,
                "×",
            ),
            target(
                14,
                "`create` of an enforced pod container (cached kubelet) ≤ 1.0 × crun's",
                ratio(&self.create, CACHED, CRUN),
                1.0,
                "×",
            ),
            target(
                14,
                "`exec --detach` of an enforced pod container ≤ 1.0 × crun's",
                ratio(&self.exec, FILE, CRUN),
                1.0,
                "×",
            ),
        ];
        for (op, s) in [
            ("start", &self.ops_start),
            ("state", &self.ops_state),
            ("kill", &self.ops_kill),
            ("delete", &self.ops_delete),
        ] {
            t.push(target(
                14,
                &format!("`{op}` ≤ 0.6 × crun's (pod container, file source)"),
                ratio(s, FILE, CRUN),
                0.6,
                "×",
            ));
        }
        t.extend([
            target(
                14,
                "kubelet lookup over TLS, 110 pods ≤ 3 ms",
                med(&self.lookup, "kubelet-110"),
                3.0,
                "ms",
            ),
            target(
                14,
                "kubelet lookup over TLS, 1,000 pods ≤ 10 ms",
                med(&self.lookup, "kubelet-1000"),
                10.0,
                "ms",
            ),
            // Issue 7: runc and youki.
            target(
                7,
                "enforced cycle, file source ≤ 0.70 × runc",
                ratio(c, FILE, RUNC),
                0.70,
                "×",
            ),
            target(
                7,
                "enforced cycle, cached kubelet ≤ 0.70 × runc",
                ratio(c, CACHED, RUNC),
                0.70,
                "×",
            ),
            target(
                7,
                "enforced cycle, file source ≤ 0.55 × youki",
                ratio(c, FILE, YOUKI),
                0.55,
                "×",
            ),
            target(
                7,
                "enforced cycle, cached kubelet ≤ 0.55 × youki",
                ratio(c, CACHED, YOUKI),
                0.55,
                "×",
            ),
            target(
                7,
                "kubelet lookup linear beyond 1,000: t(5,000) / t(1,000) ≤ 5",
                (lookup_growth, None),
                5.0,
                "×",
            ),
            target(
                7,
                "exec enforcement overhead (pod − unmanaged, pairwise) ≤ 0.3 ms",
                (
                    self.exec.diff(FILE, UNMANAGED),
                    self.exec.diff_ci(FILE, UNMANAGED),
                ),
                0.3,
                "ms",
            ),
            target(
                7,
                "exec of a kubelet-sourced pod container: kubelet requests = 0",
                (
                    (!self.exec.by_case.is_empty()).then_some(self.exec_requests as f64),
                    None,
                ),
                0.0,
                "requests",
            ),
        ]);
        for (op, s) in [
            ("state", &self.ops_state),
            ("kill", &self.ops_kill),
            ("start", &self.ops_start),
            ("delete", &self.ops_delete),
        ] {
            t.push(target(
                7,
                &format!("`{op}` ≤ 2 ms (pod container, file source)"),
                med(s, FILE),
                2.0,
                "ms",
            ));
        }
        t
    }

    pub fn to_json(&self) -> Value {
        let ratios: serde_json::Map<String, Value> = self
            .ratios()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), round3(v)))
            .collect();
        let ratio_cis: serde_json::Map<String, Value> = self
            .ratio_cis()
            .into_iter()
            .map(|(k, v)| {
                let v = v.map_or(Value::Null, |(lo, hi)| {
                    json!([round3(Some(lo)), round3(Some(hi))])
                });
                (k.to_owned(), v)
            })
            .collect();
        let targets: Vec<Value> = self
            .targets()
            .into_iter()
            .map(|t| {
                json!({"issue": t.issue, "target": t.name, "measured": round3(t.measured),
                       "ci95": t.ci.map(|(lo, hi)| json!([round3(Some(lo)), round3(Some(hi))])),
                       "limit": t.limit, "unit": t.unit, "met": t.met, "verdict": t.verdict()})
            })
            .collect();
        let rss: serde_json::Map<String, Value> = self
            .create_rss_kib
            .order
            .iter()
            .map(|c| (c.clone(), round3(self.create_rss_kib.median(c))))
            .collect();
        let binaries: serde_json::Map<String, Value> = self
            .binaries
            .iter()
            .map(|(n, p, b, v)| (n.clone(), json!({"path": p, "bytes": b, "version": v})))
            .collect();
        json!({
            "cycle_ms": self.cycle.to_json(),
            "exec_ms": self.exec.to_json(),
            "lookup_ms": self.lookup.to_json(),
            "ratios": ratios,
            "ratios_ci95": ratio_cis,
            "cycle_steps_ms": {
                "create": self.create.to_json(),
                "start": self.start.to_json(),
                "delete": self.delete.to_json(),
            },
            "commands_ms": {
                "start": self.ops_start.to_json(),
                "state": self.ops_state.to_json(),
                "exec": self.exec.to_json(),
                "kill": self.ops_kill.to_json(),
                "delete": self.ops_delete.to_json(),
            },
            "explain_process_ms": self.explain.to_json(),
            "exec_enforcement_overhead_ms": round3(self.exec.diff(FILE, UNMANAGED)),
            "seal_cost_ms": self.seal_cost_json(),
            "exec_enforcement_inprocess_ms": self.exec_filter.to_json(),
            "create_enforcement_inprocess_ms": self.create_stage.to_json(),
            "exec_enforcement_overhead_ci95_ms": self
                .exec
                .diff_ci(FILE, UNMANAGED)
                .map(|(lo, hi)| json!([round3(Some(lo)), round3(Some(hi))])),
            "create_peak_rss_kib": rss,
            "binaries": binaries,
            "targets": targets,
            "failures": self.failures,
            "notes": self.notes,
            "meta": self.meta,
        })
    }

    /// What the re-exec from a sealed image costs: per-round differences ours-pod-file −
    /// presealed, and the same for crun's own re-exec.
    fn seal_cost(&self) -> Vec<(&'static str, Option<f64>, Option<Interval>)> {
        [
            ("create", &self.create, FILE, PRESEALED),
            ("exec", &self.exec, FILE, PRESEALED),
            ("crun_create", &self.create, CRUN, CRUN_PRESEALED),
            ("crun_exec", &self.exec, CRUN, CRUN_PRESEALED),
        ]
        .into_iter()
        .map(|(what, s, a, b)| (what, s.diff(a, b), s.diff_ci(a, b)))
        .collect()
    }

    fn seal_cost_json(&self) -> Value {
        let mut map = serde_json::Map::new();
        for (what, median, ci) in self.seal_cost() {
            map.insert(what.to_owned(), round3(median));
            map.insert(
                format!("{what}_ci95"),
                ci.map_or(Value::Null, |(lo, hi)| {
                    json!([round3(Some(lo)), round3(Some(hi))])
                }),
            );
        }
        Value::Object(map)
    }

    pub fn markdown(&self) -> String {
        let mut o = String::new();
        let f = |x: Option<f64>| x.map_or("–".to_owned(), |v| format!("{v:.2}"));
        let mp = |s: &Series, c: &str| {
            if s.get(c).is_none() {
                return "–".to_owned();
            }
            format!("{} / {}", f(s.median(c)), f(s.p90(c)))
        };
        if self.smoke {
            let _ = writeln!(
                o,
                "> **Smoke run** (a few rounds, usually debug builds): it proves the harness \
                 works; its numbers are not measurements.\n"
            );
        }
        let n = self.cycle.by_case.values().next().map_or(0, Vec::len);
        let _ = writeln!(
            o,
            "#### Shim cycle: create → start → wait → delete of a busybox `true` container \
             (ms, median / p90, {n} interleaved rounds)\n"
        );
        let _ = writeln!(
            o,
            "| case | cycle | create | start | delete | × crun | × runc | × youki | create × crun \
             | create peak RSS |"
        );
        let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|");
        for case in &self.cycle.order {
            let rss = self
                .create_rss_kib
                .median(case)
                .map_or("–".to_owned(), |k| format!("{:.1} MiB", k / 1024.0));
            let _ = writeln!(
                o,
                "| {case} | {} | {} | {} | {} | {} | {} | {} | {} | {rss} |",
                mp(&self.cycle, case),
                mp(&self.create, case),
                mp(&self.start, case),
                mp(&self.delete, case),
                f(self.cycle.ratio(case, CRUN)),
                f(self.cycle.ratio(case, RUNC)),
                f(self.cycle.ratio(case, YOUKI)),
                f(self.create.ratio(case, CRUN)),
            );
        }
        if !self.create_stage.order.is_empty() {
            let shown: Vec<String> = self
                .create_stage
                .order
                .iter()
                .filter_map(|c| Some(format!("{c} {:.3} ms", self.create_stage.median(c)?)))
                .collect();
            let _ = writeln!(
                o,
                "\nThe group stage measured inside the runtime (identify + lookup + decide: the \
                 `elapsed_us` of its create audit line, median): {}.",
                shown.join(", ")
            );
        }
        if !self.exec.order.is_empty() {
            let n = self.exec.by_case.values().next().map_or(0, Vec::len);
            let _ = writeln!(
                o,
                "\n#### Single commands on a running `sleep` container (ms, median / p90, {n} \
                 rounds)\n"
            );
            let _ = writeln!(
                o,
                "| case | start | state | exec --detach `true` | kill 9 | delete |"
            );
            let _ = writeln!(o, "|---|---|---|---|---|---|");
            for case in &self.exec.order {
                let _ = writeln!(
                    o,
                    "| {case} | {} | {} | {} | {} | {} |",
                    mp(&self.ops_start, case),
                    mp(&self.ops_state, case),
                    mp(&self.exec, case),
                    mp(&self.ops_kill, case),
                    mp(&self.ops_delete, case),
                );
            }
            if self.exec.get(CRUN).is_some() {
                let _ = writeln!(
                    o,
                    "\nThe same as ratios to crun (median of per-round ratios, ~95% CI):\n"
                );
                let _ = writeln!(
                    o,
                    "| case | start | state | exec --detach `true` | kill 9 | delete |"
                );
                let _ = writeln!(o, "|---|---|---|---|---|---|");
                let rc = |s: &Series, c: &str| match (s.ratio(c, CRUN), s.ratio_ci(c, CRUN)) {
                    (Some(r), Some((lo, hi))) => format!("{r:.2} ({lo:.2} – {hi:.2})"),
                    (r, _) => f(r),
                };
                for case in self.exec.order.iter().filter(|c| *c != CRUN) {
                    let _ = writeln!(
                        o,
                        "| {case} | {} | {} | {} | {} | {} |",
                        rc(&self.ops_start, case),
                        rc(&self.ops_state, case),
                        rc(&self.exec, case),
                        rc(&self.ops_kill, case),
                        rc(&self.ops_delete, case),
                    );
                }
            }
        }
        let seal: Vec<String> = self
            .seal_cost()
            .into_iter()
            .filter_map(|(what, median, ci)| {
                let ci = ci.map_or(String::new(), |(lo, hi)| {
                    format!(" (~95% CI {lo:.2} – {hi:.2})")
                });
                Some(format!("`{what}` {:.2} ms{ci}", median?))
            })
            .collect();
        if !seal.is_empty() {
            let _ = writeln!(
                o,
                "\nThe re-exec from a sealed image (CVE-2019-5736), measured as ours-pod-file − \
                 ours-pod-file-presealed (and crun − crun-presealed) per round, median: {}.",
                seal.join(", ")
            );
        }
        if !self.exec_filter.order.is_empty() {
            let shown: Vec<String> = self
                .exec_filter
                .order
                .iter()
                .filter_map(|c| Some(format!("{c} {:.3} ms", self.exec_filter.median(c)?)))
                .collect();
            let _ = writeln!(
                o,
                "\nExec enforcement measured inside the runtime (the `elapsed_us` of its exec \
                 audit line, median): {}.",
                shown.join(", ")
            );
        }
        if !self.lookup.order.is_empty() {
            let n = self.lookup.by_case.values().next().map_or(0, Vec::len);
            let _ = writeln!(
                o,
                "\n#### Kubelet lookup over TLS, cache miss (ms, median / p90, {n} rounds)\n"
            );
            let _ = writeln!(
                o,
                "| stand-in serving | lookup (explain's elapsed_us) | whole `explain` process |"
            );
            let _ = writeln!(o, "|---|---|---|");
            for case in &self.lookup.order {
                let pods = case.trim_start_matches("kubelet-");
                let _ = writeln!(
                    o,
                    "| {pods} pods | {} | {} |",
                    mp(&self.lookup, case),
                    mp(&self.explain, case)
                );
            }
        }
        let _ = writeln!(o, "\n#### Binaries\n");
        let _ = writeln!(o, "| binary | size | version |");
        let _ = writeln!(o, "|---|---|---|");
        for (name, _, bytes, version) in &self.binaries {
            let _ = writeln!(
                o,
                "| {name} | {:.1} MiB | {version} |",
                *bytes as f64 / 1048576.0
            );
        }
        let _ = writeln!(o, "\n#### Targets\n");
        let _ = writeln!(o, "| issue | target | measured (median) | ~95% CI | met |");
        let _ = writeln!(o, "|---|---|---|---|---|");
        for t in self.targets() {
            let measured = t
                .measured
                .map_or("not measured".to_owned(), |m| format!("{m:.2} {}", t.unit));
            let ci =
                t.ci.map_or("–".to_owned(), |(lo, hi)| format!("{lo:.2} – {hi:.2}"));
            let verdict = match t.verdict() {
                "no" => "**no**",
                v => v,
            };
            let _ = writeln!(
                o,
                "| {} | {} | {measured} | {ci} | {verdict} |",
                t.issue, t.name
            );
        }
        if !self.notes.is_empty() || !self.meta.is_empty() {
            let _ = writeln!(o);
        }
        if self
            .targets()
            .iter()
            .any(|t| t.verdict().contains("within noise"))
        {
            let _ = writeln!(
                o,
                "- \"within noise\": the ~95% confidence interval of the median contains the \
                 limit; more rounds (`--iterations`) or a quieter machine would settle it"
            );
        }
        for note in &self.notes {
            let _ = writeln!(o, "- {note}");
        }
        o
    }
}
