//! `explain`: what the group stage would do for a bundle or an existing container, without
//! creating or changing anything. Exits non-zero where create would fail.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;

use crate::config::Config;
use crate::container_state::{self, container_dir, load_container};
use crate::pod::Identity;
use crate::podgroups::{self, CacheWrites};
use crate::record::Record;
use crate::spec_stage::decide::PrimaryGidRule;
use crate::spec_stage::load::BundleSpec;
use crate::spec_stage::{Evaluation, evaluate};

/// Show identity, looked-up groups and the decision for a bundle or container
#[derive(Args, Debug)]
pub struct Explain {
    /// Bundle directory to evaluate (its config.json is read, never written)
    #[arg(short, long)]
    pub bundle: Option<PathBuf>,
    /// Output format
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub format: String,
    /// An existing container; with --bundle, the id create would be given (defaults to the
    /// bundle directory's name, which is the container id under containerd and CRI-O)
    pub container_id: Option<String>,
}

#[derive(Serialize)]
struct Report<'a> {
    bundle: &'a Path,
    #[serde(flatten)]
    evaluation: &'a Evaluation,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<Record>,
}

pub fn explain(args: Explain, root: &Path, config: &Config) -> Result<()> {
    let (bundle, id, spec, record) = match (&args.bundle, &args.container_id) {
        (Some(bundle), id) => {
            let id = match id {
                Some(id) => id.clone(),
                None => bundle_dir_name(bundle)?,
            };
            let spec = BundleSpec::load(bundle)?;
            (bundle.clone(), id, spec, None)
        }
        (None, Some(id)) => {
            let dir = container_dir(root, id)?;
            let container = load_container(root, id)?;
            let mut spec = BundleSpec::load(container.bundle())?;
            spec.annotations = container_state::annotations(&container);
            let record = Record::load(&dir)?;
            (container.bundle().clone(), id.clone(), spec, record)
        }
        (None, None) => bail!("explain needs --bundle or a container id"),
    };
    // Reads the cache, never writes it: explain changes nothing.
    let source = podgroups::from_config(config, root, CacheWrites::ReadOnly);
    let evaluation = evaluate(&spec, &id, config, &*source)?;
    let report = Report {
        bundle: &bundle,
        evaluation: &evaluation,
        record,
    };
    if args.format == "json" {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_text(&report, &spec));
    }
    Ok(())
}

fn bundle_dir_name(bundle: &Path) -> Result<String> {
    let abs = bundle
        .canonicalize()
        .with_context(|| format!("resolving {}", bundle.display()))?;
    abs.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .context("the bundle has no directory name; pass the container id")
}

fn gids(g: &[u32]) -> String {
    if g.is_empty() {
        return "(none)".to_owned();
    }
    g.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}

fn render_text(report: &Report<'_>, spec: &BundleSpec) -> String {
    let e = report.evaluation;
    let mut out = String::new();
    let _ = writeln!(out, "container:        {}", e.container_id);
    let _ = writeln!(out, "bundle:           {}", report.bundle.display());
    let identity = match &e.identity {
        Identity::PodContainer {
            pod,
            container_name,
        } => format!(
            "container {:?} of pod {pod}",
            container_name.as_deref().unwrap_or("?")
        ),
        Identity::Sandbox { pod: Some(pod) } => format!("sandbox of pod {pod}"),
        Identity::Sandbox { pod: None } => "sandbox".to_owned(),
        Identity::Unmanaged => "unmanaged (no Kubernetes pod annotations)".to_owned(),
    };
    let _ = writeln!(out, "identity:         {identity}");
    if let Some(source) = &e.source {
        let _ = writeln!(out, "source:           {source}");
    }
    if let Some(g) = &e.pod_groups {
        let _ = writeln!(
            out,
            "pod grants:       supplementalGroups [{}], fsGroup {}",
            gids(&g.supplemental_groups),
            g.fs_group
                .map(|f| f.to_string())
                .unwrap_or_else(|| "(none)".into())
        );
        for v in &g.volume_gids {
            let _ = writeln!(
                out,
                "volume gid:       {} from PersistentVolume {} (claim {}, volume {:?})",
                v.gid, v.persistent_volume, v.claim, v.volume
            );
        }
    }
    let _ = writeln!(
        out,
        "process user:     uid {} gid {}",
        spec.user.uid, spec.user.gid
    );
    if let Some(rule) = e.primary_gid_rule {
        let why = match rule {
            PrimaryGidRule::ImagePolicy => {
                "chosen by the image, kept as the CRI resolved it (primary-gid = \"image\")"
            }
            PrimaryGidRule::RunAsGroup => "the container's effective runAsGroup",
            PrimaryGidRule::Granted => "granted by the pod",
            PrimaryGidRule::EqualsUid => "equals the uid (primary-gid = \"granted-or-uid\")",
        };
        let run_as_group = e
            .run_as_group
            .map(|g| format!("runAsGroup {g}"))
            .unwrap_or_else(|| "no runAsGroup".into());
        let _ = writeln!(
            out,
            "primary gid:      {} — {why} ({run_as_group})",
            e.primary_gid
        );
    }
    let _ = writeln!(
        out,
        "additionalGids:   {}",
        gids(&spec.user.additional_gids)
    );
    match &e.decision {
        Some(d) => {
            let _ = writeln!(out, "kept:             {}", gids(&d.kept));
            let _ = writeln!(out, "dropped:          {}", gids(&d.dropped));
            let verdict = match (d.drops_any(), e.set_no_new_privileges) {
                (true, false) => "create rewrites process.user.additionalGids, nothing else",
                (true, true) => {
                    "create rewrites process.user.additionalGids and process.noNewPrivileges, \
                     nothing else"
                }
                (false, true) => "create sets process.noNewPrivileges, nothing else",
                (false, false) => "create leaves config.json untouched",
            };
            let _ = writeln!(out, "result:           {verdict}");
        }
        None => {
            let _ = writeln!(out, "result:           passed through unchanged");
        }
    }
    if e.set_no_new_privileges {
        let _ = writeln!(
            out,
            "noNewPrivileges:  create sets it (no-new-privileges = \"set\"), and for execs"
        );
    } else if e.enforces_no_new_privileges {
        let _ = writeln!(out, "noNewPrivileges:  already set; kept for execs");
    }
    if let Some(record) = &report.record {
        let _ = writeln!(
            out,
            "record (execs):   granted [{}], primary gid {}",
            gids(&record.granted),
            record.primary_gid
        );
    }
    out
}
